"""Produce a :class:`~stream.workload.Workload` to ``clicks.v1``: single events or batch envelopes.

Batches hold events of one partition's users (Kafka's default partitioner decides),
so the consumer never needs a repartition hop. Each message goes to its partition
explicitly, so the placement does not depend on the client's partitioner.

:func:`produce_workload` makes each event as it sends it. For latency measurements on a
machine the producer shares with the system under test, :func:`build_schedule` makes
and encodes every message first and :func:`play_schedule` only sends them, each at its
planned time: the producer's own CPU (~60% of a core at 14.5k events/s when it makes
events as it goes, on this 2-core box) stays out of the measured lag.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Optional

from confluent_kafka import Producer

from stream.errors import BrokerError
from stream.partitioning import partition_for
from stream.serde import SchemaRegistry
from stream.topology import Topic
from stream.workload import Workload


@dataclass
class ProduceStats:
    events: int = 0
    malformed: int = 0
    messages: int = 0
    seconds: float = 0.0
    expected_rejects: Counter = field(default_factory=Counter)
    #: valid events as produced (kept only when ``keep=True``)
    produced: list = field(default_factory=list)
    #: play_schedule: how far behind its plan the producer ever was (ms)
    late_ms_max: float = 0.0


@dataclass(frozen=True)
class Scheduled:
    """One message of a schedule: when to send it (epoch ms), where, and what."""
    at_ms: float
    partition: int
    key: bytes
    value: bytes
    events: int


def produce_workload(producer: Producer, topic: Topic, workload: Workload, *, events: int,
                     batch_size: int = 0, malformed_share: float = 0.0, target_rate: float = 0.0,
                     batch_linger_ms: float = 0.0, keep: bool = False, registry: SchemaRegistry | None = None,
                     progress: Optional[Callable[[int, int], None]] = None) -> ProduceStats:
    reg = registry or SchemaRegistry.default()
    stats = ProduceStats()
    n_parts = topic.partitions
    pending: dict[int, list[dict]] = {}
    started: dict[int, float] = {}  # when each pending batch got its first event
    linger = batch_linger_ms / 1000
    t0 = time.monotonic()

    def send(value: bytes, key: str, partition: int) -> None:
        _send(producer, topic.name, value, key.encode(), partition)
        stats.messages += 1
        if stats.messages % 1000 == 0:
            producer.poll(0)

    def send_batch(part: int) -> None:
        evs = pending.pop(part)
        started.pop(part, None)
        send(reg.encode_envelope(evs, "stream-loadgen"), evs[0]["user_id"], part)

    for i, (record, reason) in enumerate(workload.mixed(events, malformed_share)):
        if reason is not None:
            stats.malformed += 1
            stats.expected_rejects[reason] += 1
        elif keep:
            stats.produced.append(record)
        if isinstance(record, bytes):  # raw garbage: its own message, on partition 0
            send(record, "garbage", 0)
        else:
            part = partition_for(record["user_id"], n_parts)
            if batch_size > 1:
                if part not in pending:
                    pending[part] = []
                    started[part] = time.monotonic()
                pending[part].append(record)
                if len(pending[part]) >= batch_size:
                    send_batch(part)
                elif linger:  # a batch never waits longer than the linger for more events
                    now = time.monotonic()
                    for old_part in [p for p, since in started.items() if now - since >= linger]:
                        send_batch(old_part)
            else:
                send(reg.encode_click(record), record["user_id"], part)
        stats.events += 1
        if target_rate > 0:
            ahead = stats.events / target_rate - (time.monotonic() - t0)
            if ahead > 0.005:
                time.sleep(ahead)
        if progress is not None and (i + 1) % 1000 == 0:
            progress(i + 1, events)
    for part in list(pending):
        send_batch(part)
    _flush(producer, topic.name)
    stats.seconds = time.monotonic() - t0
    if progress is not None and events % 1000:
        progress(events, events)
    return stats


def build_schedule(workload: Workload, topic: Topic, *, events: int, batch_size: int, linger_ms: float,
                   lead_s: float = 0.3, registry: SchemaRegistry | None = None) -> list[Scheduled]:
    """Every message of a paced run, encoded in advance, in order of send time.

    Event times follow the workload's rate from a start a little in the future (the time
    encoding is expected to take, twice over, plus ``lead_s``). A batch of a partition is
    sent when it holds ``batch_size`` events or ``linger_ms`` after its first event, as a
    producer with a linger timer would; ``batch_size`` <= 1 sends each event alone.
    """
    if workload.start_ms != 0:
        raise ValueError("build_schedule needs a Workload with start_ms=0 (it picks the start itself)")
    reg = registry or SchemaRegistry.default()
    pending: dict[int, tuple[float, list[dict]]] = {}
    planned: list[tuple[float, int, list[dict]]] = []
    for ev in workload.events(events):  # event times relative to 0
        ts = ev["timestamp"]
        for part in [p for p, (first, _) in pending.items() if first + linger_ms <= ts]:
            planned.append((pending[part][0] + linger_ms, part, pending.pop(part)[1]))
        part = partition_for(ev["user_id"], topic.partitions)
        first, evs = pending.setdefault(part, (ts, []))
        evs.append(ev)
        if len(evs) >= max(batch_size, 1):
            planned.append((ts, part, pending.pop(part)[1]))
    planned += [(first + linger_ms, part, evs) for part, (first, evs) in pending.items()]
    planned.sort(key=lambda m: m[0])

    def encode(at: float, evs: list[dict], start: int) -> bytes:
        for ev in evs:
            ev["timestamp"] += start
        if batch_size <= 1:
            return reg.encode_click(evs[0])
        return reg.encode_batch({"batch_id": uuid.uuid4().hex, "producer": "stream-loadgen",
                                 "created": int(start + at), "events": evs})

    t0, probe = time.monotonic(), planned[:50]
    for at, _, evs in probe:  # start 0 changes nothing: this only times the encoding
        encode(at, evs, 0)
    per_msg = (time.monotonic() - t0) / max(len(probe), 1)
    start = int(time.time() * 1000 + (2 * per_msg * len(planned) + lead_s) * 1000)
    return [Scheduled(start + at, part, evs[0]["user_id"].encode(), encode(at, evs, start), len(evs))
            for at, part, evs in planned]


def play_schedule(producer: Producer, topic: str, schedule: list[Scheduled]) -> ProduceStats:
    """Send each message at its time (never early); ``late_ms_max`` says how late any was."""
    stats = ProduceStats()
    if schedule:  # the clock starts at the first message's time, not while waiting for it
        time.sleep(max(schedule[0].at_ms / 1000 - time.time(), 0.0))
    t0 = time.monotonic()
    for m in schedule:
        ahead = m.at_ms / 1000 - time.time()
        if ahead > 0.0005:
            time.sleep(ahead)
        else:
            stats.late_ms_max = max(stats.late_ms_max, -ahead * 1000)
        _send(producer, topic, m.value, m.key, m.partition)
        producer.poll(0)
        stats.messages += 1
        stats.events += m.events
    _flush(producer, topic)
    stats.seconds = time.monotonic() - t0
    return stats


def _send(producer: Producer, topic: str, value: bytes, key: bytes, partition: int) -> None:
    while True:
        try:
            producer.produce(topic, value=value, key=key, partition=partition)
            return
        except BufferError:  # the local queue is full: let deliveries drain
            producer.poll(0.05)


def _flush(producer: Producer, topic: str, timeout: float = 30.0) -> None:
    left = producer.flush(timeout)
    if left:
        raise BrokerError(f"{left} message(s) not delivered to {topic} within {timeout:.0f}s")
