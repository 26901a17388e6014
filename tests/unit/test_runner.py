"""The runner's error policy, with plain in-memory handlers (no broker involved)."""

import pytest

from stream.core.profile import Position
from stream.errors import StoreError, ValidationError
from stream.monitor import StageStats
from stream.runner import FatalStageError, RawMessage, StageRunner
from stream.serde import SchemaRegistry
from stream.workload import Workload

REG = SchemaRegistry.default()


class Recorder:
    def __init__(self, name, fail=None):
        self.stats = StageStats(name)
        self.seen = []
        self.fail = fail

    def handle(self, ev, pos: Position, msg):
        if self.fail:
            self.fail(ev)
        self.seen.append((ev["event_id"], pos))
        self.stats.count("out")
        return ev


class ListDLQ:
    def __init__(self):
        self.items = []

    def send(self, stage, exc, reason, msg, raw, batch_index):
        self.items.append((stage, type(exc).__name__, reason, msg.offset, batch_index, raw))


def msg(value, offset=7):
    return RawMessage("clicks.v1", 2, offset, b"k", value)


EVENTS = list(Workload(seed=1, users=5).events(5))


def test_batch_events_get_positions_and_pass_through_all_handlers():
    a, b, dlq = Recorder("ingest"), Recorder("profile"), ListDLQ()
    r = StageRunner([a, b], dlq, REG)
    r.process(msg(REG.encode_batch({"batch_id": "b", "producer": "p", "created": 0, "events": EVENTS})))
    assert [p for _, p in b.seen] == [Position(2, 7, i) for i in range(5)]
    assert a.stats.totals["in"] == 5 and a.stats.messages_total == 1 and not dlq.items


def test_undecodable_message_goes_whole_to_the_dlq():
    a, dlq = Recorder("ingest"), ListDLQ()
    StageRunner([a], dlq, REG).process(msg(b"\x09junk"))
    assert dlq.items == [("ingest", "SerdeError", "undecodable", 7, None, b"\x09junk")]
    assert a.stats.totals["rejected"] == 1 and not a.seen


def test_validation_error_rejects_only_that_event_reencoded():
    def fail(ev):
        if ev["event_id"] == EVENTS[2]["event_id"]:
            raise ValidationError("missing_user_id", "nope")
    a, b, dlq = Recorder("ingest", fail), Recorder("profile"), ListDLQ()
    StageRunner([a, b], dlq, REG).process(
        msg(REG.encode_batch({"batch_id": "b", "producer": "p", "created": 0, "events": EVENTS})))
    assert len(b.seen) == 4
    (stage, cls, reason, offset, index, raw), = dlq.items
    assert (stage, cls, reason, index) == ("ingest", "ValidationError", "missing_user_id", 2)
    assert REG.decode_clicks(raw) == ("ClickEvent", EVENTS[2])


def test_unexpected_error_is_dead_lettered_and_counted_then_fatal_when_persistent():
    def boom(ev):
        raise KeyError("bug")
    b, dlq = Recorder("profile", boom), ListDLQ()
    r = StageRunner([Recorder("ingest"), b], dlq, REG, max_errors=3)
    for i in range(3):
        r.process(msg(REG.encode_click(EVENTS[i]), offset=i))
    assert [d[2] for d in dlq.items] == ["stage_error"] * 3 and b.stats.totals["error"] == 3
    with pytest.raises(FatalStageError, match="4 errors in a row"):
        r.process(msg(REG.encode_click(EVENTS[3]), offset=3))
    assert len(dlq.items) == 4  # the record that tipped it over is kept too


def test_infrastructure_fault_is_fatal_at_once():
    def down(ev):
        raise StoreError("redis gone")
    r = StageRunner([Recorder("profile", down)], ListDLQ(), REG)
    with pytest.raises(FatalStageError, match="infrastructure fault"):
        r.process(msg(REG.encode_click(EVENTS[0])))


def test_handler_returning_none_stops_the_chain():
    class Drop(Recorder):
        def handle(self, ev, pos, m):
            return None
    b = Recorder("profile")
    StageRunner([Drop("ingest"), b], ListDLQ(), REG).process(msg(REG.encode_click(EVENTS[0])))
    assert not b.seen
