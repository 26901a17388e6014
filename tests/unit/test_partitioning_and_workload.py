import pytest

from stream.partitioning import murmur2, partition_for
from stream.workload import MALFORMED_REASONS, Workload


@pytest.mark.parametrize("data,expected", [
    # test vectors of Kafka's Java client (UtilsTest.testMurmur2)
    (b"21", -973932308), (b"foobar", -790332482), (b"a-little-bit-long-string", -985981536),
    (b"a-little-bit-longer-string", -1486304829), (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
    (b"abc", 479470107),
])
def test_murmur2_matches_kafka(data, expected):
    assert murmur2(data) == expected


def test_partition_for_is_in_range_and_spreads():
    parts = [partition_for(f"u{i}", 4) for i in range(1000)]
    assert set(parts) == {0, 1, 2, 3}
    assert min(parts.count(p) for p in range(4)) > 150


def test_workload_is_deterministic_and_realistic():
    a = list(Workload(seed=3, users=50).events(500))
    b = list(Workload(seed=3, users=50).events(500))
    assert [e["event_id"] for e in a] == [e["event_id"] for e in b]
    assert len({e["event_id"] for e in a}) == 500
    types = {e["event_type"] for e in a}
    assert {"view", "click"} <= types
    assert all(e["timestamp"] >= a[0]["timestamp"] for e in a)
    assert all(e["price"] is None or e["price"] > 0 for e in a)


def test_user_preferences_drive_categories():
    g = Workload(seed=5, users=1, categories=10)
    events = [e for e in g.events(3000) if e["category"]]
    top = max(range(10), key=lambda c: g.user_prefs("u0")[c])
    share = sum(e["category"] == f"c{top:02d}" for e in events) / len(events)
    assert share > g.user_prefs("u0")[top] - 0.1


@pytest.mark.parametrize("kind", sorted(MALFORMED_REASONS))
def test_malformed_kinds(kind):
    rec = Workload(seed=1).malformed(kind)
    assert isinstance(rec, bytes) == (kind in ("garbage", "truncated"))


def test_mixed_share():
    recs = list(Workload(seed=2).mixed(2000, malformed_share=0.1))
    bad = [r for r, reason in recs if reason]
    assert 120 < len(bad) < 280


def test_a_schedule_batches_by_partition_within_the_linger_and_keeps_every_event():
    import time

    from stream.loadgen import build_schedule
    from stream.serde import SchemaRegistry
    from stream.topology import Topology
    reg, topic = SchemaRegistry.default(), Topology.load().topic("clicks.v1")
    before_ms = time.time() * 1000
    sched = build_schedule(Workload(seed=2, users=200, rate=5000, start_ms=0), topic, events=3000,
                           batch_size=50, linger_ms=5, lead_s=0.0)
    assert [m.at_ms for m in sched] == sorted(m.at_ms for m in sched)
    assert sched[0].at_ms >= before_ms  # the whole run is still ahead once it is built
    seen = []
    for m in sched:
        kind, batch = reg.decode_clicks(m.value)
        evs = batch["events"]
        assert kind == "ClickBatch" and 1 <= len(evs) <= 50 and m.events == len(evs)
        assert {partition_for(e["user_id"], topic.partitions) for e in evs} == {m.partition}
        assert m.key == evs[0]["user_id"].encode()
        assert all(0 <= m.at_ms - e["timestamp"] <= 5 for e in evs)  # sent within the linger, never early
        seen += evs
    assert len(seen) == 3000 and len({e["event_id"] for e in seen}) == 3000
    assert seen[-1]["timestamp"] - min(e["timestamp"] for e in seen) == pytest.approx(2999 / 5000 * 1000, abs=1)
    singles = build_schedule(Workload(seed=2, users=20, rate=5000, start_ms=0), topic, events=10, batch_size=1,
                             linger_ms=5, lead_s=0.0)
    assert [reg.decode_clicks(m.value)[0] for m in singles] == ["ClickEvent"] * 10
    with pytest.raises(ValueError, match="start_ms=0"):
        build_schedule(Workload(seed=2), topic, events=10, batch_size=1, linger_ms=5)
