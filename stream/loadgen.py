"""Produce a :class:`~stream.workload.Workload` to ``clicks.v1``: single events or batch envelopes.

Batches hold events of one partition's users (Kafka's default partitioner decides),
so the consumer never needs a repartition hop. Each message goes to its partition
explicitly, so the placement does not depend on the client's partitioner.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Optional

from confluent_kafka import Producer

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
        while True:
            try:
                producer.produce(topic.name, value=value, key=key.encode(), partition=partition)
                break
            except BufferError:
                producer.poll(0.05)
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
    left = producer.flush(30)
    stats.seconds = time.monotonic() - t0
    if left:
        from stream.errors import BrokerError
        raise BrokerError(f"{left} message(s) not delivered to {topic.name} within 30s")
    if progress is not None and events % 1000:
        progress(events, events)
    return stats
