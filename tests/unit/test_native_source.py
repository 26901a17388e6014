"""The native clicks reader's own logic: which partitions Faust may fetch, where reading starts,
what a fetched batch becomes (handed over, acknowledged, dropped as stale, a gap), how long a
turn lasts. The reader inside a real worker, on the real broker, is covered by the pipeline
integration tests (kill -9, a joining worker)."""

from __future__ import annotations

import asyncio
from collections import namedtuple
from types import SimpleNamespace

from confluent_kafka import OFFSET_BEGINNING


from stream.app import native
from stream.app.native import ExcludingSet, NativeSource

TP = namedtuple("TP", "topic partition")
CLICKS = "clicks.v1"


class Msg:
    def __init__(self, partition: int, offset: int, value: bytes = b"v", error: object = None) -> None:
        self._p, self._o, self._v, self._e = partition, offset, value, error

    def error(self): return self._e
    def partition(self): return self._p
    def offset(self): return self._o
    def key(self): return b"k"
    def value(self): return self._v
    def headers(self): return [("h", b"1")] if self._o % 2 else None
    def timestamp(self): return (1, 1_000 + self._o)


class FaustConsumer:
    """What the reader uses of Faust's consumer."""

    def __init__(self, assigned: set) -> None:
        self.acked: list[tuple] = []
        self.gaps: list[tuple] = []
        self.commits = 0
        self._commit_every = None
        self._n_acked = 0
        self.flow_active = True
        self._active_partitions = set(assigned)
        self._assigned = assigned

    def ack(self, message) -> bool:
        message.acked = True
        self.acked.append((message.tp, message.offset))
        self._n_acked += 1
        return True

    async def _add_gap(self, tp, first: int, last: int) -> None:
        self.gaps.append((tp, first, last))

    async def commit(self) -> bool:
        self.commits += 1
        return True

    def assignment(self) -> set:
        return self._assigned

    def verify_event_path(self, now, tp) -> None:
        raise AssertionError(f"verified {tp}")

    async def seek_to_committed(self):
        return {}


class Librdkafka:
    def __init__(self, high: dict[int, int] | None = None) -> None:
        self.assigned: list = []
        self.high = high or {}

    def assign(self, tps) -> None:
        self.assigned = [(t.partition, t.offset) for t in tps]

    def unassign(self) -> None:
        self.assigned = []

    def get_watermark_offsets(self, tp, cached: bool = False):
        return 0, self.high.get(tp.partition, -1)


def source(assigned_partitions=(0, 1), reset: str = "earliest", turn_s: float = 1.0):
    tps = {TP(CLICKS, p) for p in assigned_partitions} | {TP("other", 0)}
    faust_consumer = FaustConsumer(tps)
    app = SimpleNamespace(conf=SimpleNamespace(id="t", consumer_auto_offset_reset=reset), consumer=faust_consumer,
                          rebalancing=False, should_stop=False,
                          tables=SimpleNamespace(recovery=SimpleNamespace(in_recovery=False)))
    handled: list = []
    src = NativeSource(app, CLICKS, handled.append, "127.0.0.1:1", turn_s=turn_s)
    src._consumer = Librdkafka()
    src._hook_consumer()
    return src, faust_consumer, handled


def reading(src, committed: dict) -> None:
    src._pending = set(committed)
    src._on_seek({TP(CLICKS, p): off for p, off in committed.items()})
    assert src._ready()
    src._start_reading()


def test_faust_never_takes_a_partition_of_the_native_topic():
    s = ExcludingSet(CLICKS, [TP(CLICKS, 0), TP("other", 0)])
    assert s == {TP("other", 0)}
    s.add(TP(CLICKS, 1))
    s.update([TP(CLICKS, 2), TP("other", 1)], {TP(CLICKS, 3)})
    assert s == {TP("other", 0), TP("other", 1)}
    s.difference_update({TP("other", 0)})
    assert s == {TP("other", 1)}


def test_hooking_faust_removes_the_topic_and_skips_its_livelock_check():
    src, fc, _ = source()
    assert fc._active_partitions == {TP("other", 0)}
    assert isinstance(fc._active_partitions, ExcludingSet)
    fc.verify_event_path(0.0, TP(CLICKS, 0))  # skipped: would raise
    try:
        fc.verify_event_path(0.0, TP("other", 0))
    except AssertionError:
        pass
    else:
        raise AssertionError("other topics must keep Faust's check")


def test_reading_starts_only_after_faust_seeks_every_assigned_partition():
    src, fc, _ = source()
    src._pending = {0, 1}
    assert not src._ready()  # no seek yet
    src._on_seek({TP(CLICKS, 0): 5})
    assert not src._ready()  # a seek that does not cover partition 1 (an earlier assignment's)
    src._on_seek({TP(CLICKS, 0): 5, TP(CLICKS, 1): None, TP("other", 0): 3})
    assert src._ready()
    fc.flow_active = False
    assert not src._ready()
    fc.flow_active = True
    src.app.rebalancing = True
    assert not src._ready()
    src.app.rebalancing = False
    src.app.tables.recovery.in_recovery = True
    assert not src._ready()


def test_reading_starts_at_the_committed_offsets_or_the_reset_policy():
    src, _, _ = source()
    reading(src, {0: 5, 1: None})
    assert sorted(src._consumer.assigned) == [(0, 5), (1, OFFSET_BEGINNING)]
    assert src.next_offset == {0: 5}


def test_a_revocation_stops_reading_and_forgets_the_seek():
    src, _, _ = source()
    reading(src, {0: 5, 1: 7})
    asyncio.run(src._on_revoked(src.app, {TP(CLICKS, 0)}))
    assert src._consumer.assigned == [] and src.partitions == {} and src._committed is None


def test_a_batch_is_handed_over_and_acknowledged_in_order():
    src, fc, handled = source()
    reading(src, {0: 5, 1: None})
    left = asyncio.run(src._deliver([Msg(0, 5), Msg(1, 0), Msg(0, 6)]))
    assert left == []
    assert [(m.partition, m.offset) for m in handled] == [(0, 5), (1, 0), (0, 6)]
    assert handled[0].headers == {"h": b"1"} and handled[1].headers == {}
    assert handled[1].timestamp_ms == 1_000 and handled[1].topic == CLICKS
    assert fc.acked == [(TP(CLICKS, 0), 5), (TP(CLICKS, 1), 0), (TP(CLICKS, 0), 6)]
    assert src.next_offset == {0: 7, 1: 1}


def test_held_acknowledgements_reach_faust_only_up_to_a_released_mark():
    src, fc, handled = source()
    src.hold_acks = True
    reading(src, {0: 0, 1: 0})
    asyncio.run(src._deliver([Msg(0, 0), Msg(1, 0)]))
    mark = src.mark()
    asyncio.run(src._deliver([Msg(0, 1)]))
    assert len(handled) == 3 and fc.acked == []  # handed over, not acknowledged: Faust cannot commit them
    assert src.release(mark) == 2
    assert fc.acked == [(TP(CLICKS, 0), 0), (TP(CLICKS, 1), 0)]
    assert src.release(mark) == 0  # released once
    assert src.release_all() == 1 and fc.acked[-1] == (TP(CLICKS, 0), 1)


def test_a_rebalance_drops_held_acknowledgements_and_voids_older_marks():
    src, fc, _ = source()
    src.hold_acks = True
    reading(src, {0: 0})
    asyncio.run(src._deliver([Msg(0, 0), Msg(0, 1)]))
    mark = src.mark()
    asyncio.run(src._on_revoked(src.app, {TP(CLICKS, 0)}))
    reading(src, {0: 0})  # the same partition again, from the committed offset
    asyncio.run(src._deliver([Msg(0, 0)]))
    assert src.release(mark) == 0 and fc.acked == []  # the next owner (maybe us) reads them again
    assert src.release_all() == 1 and fc.acked == [(TP(CLICKS, 0), 0)]


def test_stale_messages_are_dropped_and_a_hole_becomes_a_gap():
    src, fc, handled = source()
    reading(src, {0: 5, 1: 3})
    asyncio.run(src._deliver([Msg(0, 4), Msg(2, 0), Msg(0, 5), Msg(0, 5), Msg(1, 9)]))
    assert [(m.partition, m.offset) for m in handled] == [(0, 5), (1, 9)]
    assert src.stale_dropped == 3  # before the committed offset, a partition not ours, a repeat
    assert fc.gaps == [(TP(CLICKS, 1), 3, 8)]


def test_a_turn_ends_when_its_time_is_up_and_returns_the_rest():
    src, fc, handled = source(turn_s=0.0)
    reading(src, {0: 0})
    msgs = [Msg(0, i) for i in range(4)]
    left = asyncio.run(src._deliver(msgs))
    assert len(handled) == 1 and left == msgs[1:]
    left = asyncio.run(src._deliver(left))
    assert len(handled) == 2 and left == msgs[2:]


def test_commit_every_n_acknowledgements_as_faust_would():
    src, fc, _ = source()
    fc._commit_every = 2
    reading(src, {0: 0})
    asyncio.run(src._deliver([Msg(0, 0), Msg(0, 1), Msg(0, 2)]))
    assert fc.commits == 1 and fc._n_acked == 0


def test_lag_counts_messages_behind_the_cached_high_watermark():
    src, _, _ = source()
    assert src.lag() is None  # not reading yet
    reading(src, {0: 5, 1: 2})
    src._consumer.high = {0: 9, 1: 2}
    assert src.lag() == 4
