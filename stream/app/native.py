"""The clicks topic read by librdkafka, inside Faust's consumer group.

Under a live load Faust's consumer costs several hundred µs of CPU per Kafka message: its
aiokafka fetcher runs in a thread of its own, and every ``getmany`` crosses from the event
loop to that thread and back, whatever the number of messages it returns. A backlog hides
it (one ``getmany`` returns hundreds of messages); a live stream does not (each returns a
few). Measured here with the same live load of 800 messages/s: 46% of a core for a bare
Faust agent, 8% for a confluent-kafka consumer polled from the event loop.

So Faust keeps what it is for and librdkafka does the reading:

* **Faust** stays subscribed to the topic. Its group decides which worker owns which
  partition, so the table's active partitions follow the topic's as before; it recovers
  the table, seeks, and commits the offsets this source acknowledges through its
  consumer (``Consumer.ack``), so the commit hooks and the effectively-once state work
  unchanged. For the checkpoint (:mod:`stream.app.checkpoint`) it holds the acknowledgements
  back until a cut's state is written (:meth:`NativeSource.mark` / :meth:`release`); a
  rebalance drops the held ones (the next owner reads those messages again).
* Faust never fetches the topic: its partitions are kept out of Faust's set of active
  partitions (and paused in aiokafka), and its livelock check skips them.
* **This source** reads the partitions Faust assigned, with ``assign()`` (no group of its
  own, no commits), from the offsets Faust's seek found committed, once Faust has finished
  the rebalance and the recovery. It stops at the next message when a rebalance starts, and
  drops whatever librdkafka had fetched for the old assignment.

The handler runs synchronously in the event loop, one fetched batch at a time: the same
contract as the direct channel (:mod:`stream.app.direct`): it must not block and must not
raise.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from time import perf_counter
from typing import Any, Callable

import faust
from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, KafkaError, TopicPartition

from stream.adapters.kafka import QUIET, client_conf
from stream.log import event
from stream.runner import NO_HEADERS, RawMessage

log = logging.getLogger("stream.worker")


class ExcludingSet(set):
    """Faust's set of active partitions, which never takes a partition of ``topic``.

    Faust adds to it (``update``/``add``) on every assignment and every resume; with this
    set in its place, the partitions of the natively read topic are never fetched by Faust.
    """

    def __init__(self, topic: str, items: Any = ()) -> None:
        super().__init__(tp for tp in items if tp.topic != topic)
        self.topic = topic

    def add(self, tp: Any) -> None:
        if tp.topic != self.topic:
            super().add(tp)

    def update(self, *others: Any) -> None:
        super().update(tp for other in others for tp in other if tp.topic != self.topic)


class _Ack:
    """What ``Consumer.ack`` reads of a message (Faust's own Message is far bigger)."""

    __slots__ = ("tp", "topic", "offset", "acked", "__weakref__")  # Faust keeps unacked messages in a WeakSet

    def __init__(self, tp: Any, offset: int) -> None:
        self.tp, self.topic, self.offset, self.acked = tp, tp.topic, offset, False


class NativeSource:
    """Reads ``topic``'s partitions assigned to this worker by Faust and hands each message to ``handler``."""

    def __init__(self, app: faust.App, topic: str, handler: Callable[[RawMessage], None], bootstrap: str, *,
                 fetch_wait_ms: int = 20, idle_s: float = 0.002, batch: int = 500, turn_s: float = 0.005,
                 consumer_factory: Callable[[dict], Any] = Consumer) -> None:
        self.app, self.topic, self.handler = app, topic, handler
        self.idle_s, self.batch, self.turn_s = idle_s, batch, turn_s
        self._held: list = []  # fetched, not yet handed over (the last turn ran out of time)
        # never joined and never committed to: assign() only; Faust's group owns the offsets
        self.config = client_conf(bootstrap, **{
            "group.id": f"{app.conf.id}.native-reader",
            "enable.auto.commit": False, "enable.auto.offset.store": False, "enable.partition.eof": False,
            "fetch.wait.max.ms": fetch_wait_ms, "fetch.min.bytes": 1,
            "queued.max.messages.kbytes": 16384,  # prefetch at most 16 MB (librdkafka's default: 64 MB)
            "client.id": f"{app.conf.id}-native",
            **QUIET,  # connection errors come back from consume() (logged there, rate-limited)
        })
        self._errors = 0
        self._factory = consumer_factory
        self._consumer: Any = None
        self._faust: Any = None            # Faust's consumer, once it exists
        self._pending: set[int] | None = None  # partitions assigned by Faust, not yet read from
        self._committed: dict[int, int | None] | None = None  # what Faust's seek found, for them
        self.partitions: dict[int, Any] = {}  # partition -> Faust TP, while reading
        self.next_offset: dict[int, int] = {}  # partition -> next offset expected
        self.stale_dropped = 0
        #: hold acknowledgements until :meth:`release` (stream.app.checkpoint): Faust then commits
        #: only offsets whose state a checkpoint cut has written; False = ack each message at once
        self.hold_acks = False
        self._unreleased: deque = deque()  # acknowledgements held back, oldest first
        self._handed = 0     # messages handed over and held since the reader started
        self._released = 0   # of those, released to Faust or dropped by a rebalance
        #: moves on every rebalance: a mark taken before one releases nothing after it
        self.epoch = 0

    # -- wiring into Faust ------------------------------------------------------------------
    def install(self) -> None:
        """Connect to the app's rebalance signals and take the topic away from Faust's fetcher."""
        self.app.on_partitions_revoked.connect(self._on_revoked)
        self.app.on_partitions_assigned.connect(self._on_assigned)

    def _hook_consumer(self) -> Any:
        consumer = self._faust
        if consumer is not None:
            return consumer
        consumer = self._faust = self.app.consumer
        consumer._active_partitions = ExcludingSet(self.topic, consumer._active_partitions or ())
        verify, seek = consumer.verify_event_path, consumer.seek_to_committed
        topic = self.topic

        def verify_event_path(now: float, tp: Any) -> None:
            if tp.topic != topic:  # Faust's "no fetch since ..." check would fire for a topic it never fetches
                verify(now, tp)

        async def seek_to_committed() -> Any:
            offsets = await seek()
            self._on_seek(offsets)
            return offsets

        consumer.verify_event_path = verify_event_path
        consumer.seek_to_committed = seek_to_committed
        return consumer

    async def _on_revoked(self, app: faust.App, revoked: set, **_: object) -> None:
        self._hook_consumer()  # Faust sends this before its first assignment, too
        self._stop_reading("revoked")
        self._committed = None  # a seek before this revocation says nothing of the next assignment

    async def _on_assigned(self, app: faust.App, assigned: set, **_: object) -> None:
        consumer = self._hook_consumer()
        self._stop_reading("rebalanced")
        tps = {tp for tp in assigned if tp.topic == self.topic}
        self._pending = {tp.partition for tp in tps}
        self._pause_in_aiokafka(consumer, tps)
        event(log, "native_source_assigned", topic=self.topic, partitions=sorted(self._pending))

    def _on_seek(self, offsets: Any) -> None:
        """Faust seeks its streams to the committed offsets once a rebalance and its recovery are done
        (the mapping has every assigned partition, ``None`` where nothing is committed)."""
        self._committed = {tp.partition: off for tp, off in offsets.items() if tp.topic == self.topic}

    def _pause_in_aiokafka(self, consumer: Any, tps: set) -> None:
        """aiokafka would still prefetch a partition Faust does not ask for: pause it, in aiokafka's own thread."""
        thread = getattr(consumer, "_thread", None)
        loop = getattr(thread, "thread_loop", None)
        aio = getattr(thread, "_consumer", None)
        if loop is None or aio is None:
            return

        def pause() -> None:
            from aiokafka import TopicPartition as AioTP  # noqa: PLC0415 - Faust's dependency
            try:
                aio.pause(*(AioTP(tp.topic, tp.partition) for tp in tps))
            except Exception as exc:  # the assignment changed again meanwhile: the next one pauses
                event(log, "native_pause_skipped", logging.DEBUG, error=str(exc))
        loop.call_soon_threadsafe(pause)

    # -- reading --------------------------------------------------------------------------------
    def _ready(self) -> bool:
        consumer = self._faust
        return (self._committed is not None and consumer is not None and consumer.flow_active
                and self._pending is not None and self._pending <= self._committed.keys()
                and not self.app.rebalancing and not self.app.tables.recovery.in_recovery)

    def _start_reading(self) -> None:
        reset = OFFSET_BEGINNING if self.app.conf.consumer_auto_offset_reset == "earliest" else OFFSET_END
        committed = self._committed or {}
        self.partitions = {p: self._faust_tp(p) for p in sorted(self._pending or ())}
        starts = {p: committed.get(p) for p in self.partitions}
        self.next_offset = {p: off for p, off in starts.items() if off is not None and off >= 0}
        self._pending = self._committed = None
        self._consumer.assign([TopicPartition(self.topic, p, self.next_offset.get(p, reset)) for p in self.partitions])
        event(log, "native_source_reading", topic=self.topic,
              start={str(p): self.next_offset.get(p, "reset") for p in self.partitions})

    def _faust_tp(self, partition: int) -> Any:
        for tp in self._faust.assignment():
            if tp.topic == self.topic and tp.partition == partition:
                return tp
        return self._faust._new_topicpartition(self.topic, partition)

    def _stop_reading(self, reason: str) -> None:
        if self.partitions and self._consumer is not None:
            self._consumer.unassign()  # librdkafka drops what it fetched for these partitions
            event(log, "native_source_stopped", topic=self.topic, reason=reason, partitions=sorted(self.partitions))
        self.partitions, self.next_offset, self._held = {}, {}, []
        self._pending = None
        self._unreleased.clear()  # not acknowledged: the next owner reads them again
        self._released = self._handed
        self.epoch += 1

    # -- held acknowledgements (the checkpoint) ------------------------------------------------
    def mark(self) -> tuple[int, int]:
        """A point in the stream: every message handed over so far (with the epoch it belongs to)."""
        return self.epoch, self._handed

    def release(self, mark: tuple[int, int]) -> int:
        """Acknowledge to Faust the held messages up to ``mark``; nothing if a rebalance came since."""
        epoch, upto = mark
        if epoch != self.epoch:
            return 0
        ack, held, n = self._faust.ack, self._unreleased, 0
        while self._released < upto:
            ack(held.popleft())
            self._released += 1
            n += 1
        return n

    def release_all(self) -> int:
        return self.release(self.mark())

    async def run(self) -> None:
        """Read until the app stops (an app task)."""
        self._hook_consumer()
        self._consumer = self._factory(self.config)
        try:
            while not self.app.should_stop:
                if self._pending is not None and self._ready():
                    self._start_reading()
                if not self.partitions or not self._faust.flow_active:
                    await asyncio.sleep(0.02)
                    continue
                msgs = self._held or self._consumer.consume(self.batch, 0)
                if not msgs:
                    await asyncio.sleep(self.idle_s)
                    continue
                self._held = await self._deliver(msgs)
                await asyncio.sleep(0)  # a turn of at most turn_s: now the loop's other tasks get theirs
        finally:
            consumer, self._consumer = self._consumer, None
            consumer.close()

    async def _deliver(self, msgs: list) -> list:
        """Hand fetched messages to the handler for at most ``turn_s``; returns those left for the next turn.

        Nothing awaits until the turn is over and every message handed over is acknowledged, so
        no rebalance or commit comes between two messages. The turn is bounded because a commit
        takes several turns of the loop: with a backlog, long turns stretched one to seconds."""
        faust_consumer = self._faust
        deadline = perf_counter() + self.turn_s
        left: list = []
        ack = self._unreleased.append if self.hold_acks else faust_consumer.ack
        handed = 0
        handler, partitions, next_offset, topic = self.handler, self.partitions, self.next_offset, self.topic
        gaps = []
        for i, m in enumerate(msgs):
            err = m.error()
            if err is not None:
                self._consume_error(err)
                continue
            p, offset = m.partition(), m.offset()
            tp = partitions.get(p)
            expected = next_offset.get(p)
            if tp is None or (expected is not None and offset < expected):
                self.stale_dropped += 1  # fetched for an earlier assignment, or read before
                continue
            if expected is not None and offset > expected:
                gaps.append((tp, expected, offset - 1))
            next_offset[p] = offset + 1
            headers = m.headers()
            handler(RawMessage(topic, p, offset, m.key(), m.value(), dict(headers) if headers else NO_HEADERS,
                               m.timestamp()[1]))
            ack(_Ack(tp, offset))
            handed += 1
            if perf_counter() > deadline:
                left = msgs[i + 1:]
                break
        if self.hold_acks:
            self._handed += handed
        for tp, first, last in gaps:  # offsets the log does not have: the commit may pass them
            await faust_consumer._add_gap(tp, first, last)
        commit_every = faust_consumer._commit_every
        if commit_every is not None and faust_consumer._n_acked >= commit_every:
            faust_consumer._n_acked = 0
            await faust_consumer.commit()
        return left

    def _consume_error(self, err: KafkaError) -> None:
        if err.fatal():
            raise NativeSourceError(f"reading {self.topic} failed: {err.str()}")
        self._errors += 1
        if self._errors <= 5 or self._errors % 100 == 0:  # greppable, never a flood
            event(log, "native_consume_error", logging.WARNING, topic=self.topic, error=err.str(), code=err.code(),
                  errors=self._errors)

    def lag(self) -> int | None:
        """Messages behind the log end over the partitions being read (None before reading starts)."""
        if not self.partitions or self._consumer is None:
            return None
        total = 0
        for p in self.partitions:
            _, high = self._consumer.get_watermark_offsets(TopicPartition(self.topic, p), cached=True)
            nxt = self.next_offset.get(p)
            if high is not None and high >= 0 and nxt is not None:
                total += max(0, high - nxt)
        return total


class NativeSourceError(Exception):
    """librdkafka reported a fatal error for the natively read topic."""
