import math

import pytest

from stream.core.profile import Position, ProfileConfig, affinity_now, fold, is_replay

CFG = ProfileConfig(affinity_half_life_s=100.0, session_gap_s=60.0, last_items=3, max_categories=2)
T0 = 1_800_000_000_000


def e(t_s, etype="view", item="i1", cat="c1", price=None, user="u1"):
    return {"user_id": user, "event_type": etype, "timestamp": T0 + int(t_s * 1000), "item_id": item,
            "category": cat, "price": price}


def run(events, cfg=CFG):
    p = None
    for i, ev in enumerate(events):
        p = fold(p, ev, Position(0, i, 0), cfg)
    return p


def test_counts_first_last_seen_and_version():
    p = run([e(0), e(1, "click"), e(2, "purchase", price=9.5)])
    assert p["counts"] == {"view": 1, "click": 1, "purchase": 1}
    assert p["version"] == 3 and p["spend"] == 9.5
    assert (p["first_seen"], p["last_seen"]) == (T0, T0 + 2000)


def test_sessions_split_on_the_inactivity_gap():
    p = run([e(0), e(30), e(90), e(151), e(152)])  # gaps: 30, 60 (same), 61 (new), 1
    assert p["sessions"] == 2
    assert p["session_start"] == T0 + 151_000 and p["session_events"] == 2
    assert p["session_total_ms"] == 90_000


def test_affinity_decays_with_half_life():
    p = run([e(0, cat="a"), e(100, cat="b")])
    now = affinity_now(p, T0 + 100_000, CFG)
    assert now["a"] == pytest.approx(0.5)  # one half-life later
    assert now["b"] == pytest.approx(1.0)
    assert affinity_now(p, T0 + 200_000, CFG)["b"] == pytest.approx(0.5)


def test_affinity_is_rebased_after_a_half_life_and_stays_bounded():
    p = run([e(0, cat="a"), e(50, cat="b")])
    assert p["affinity_at"] == T0  # within a half-life: stored as of the first event
    assert p["affinity"]["b"] == pytest.approx(2 ** 0.5)
    p = run([e(0, cat="a"), e(50, cat="b"), e(1_000, cat="a")])
    assert p["affinity_at"] == T0 + 1_000_000  # ten half-lives on: decayed to the new event
    assert p["affinity"]["a"] == pytest.approx(1.0 + 2 ** -10)
    assert p["affinity"]["b"] == pytest.approx(2 ** -9.5)
    long_run = run([e(t, cat="a") for t in range(0, 100_000, 90)])  # 1,000 half-lives
    now = affinity_now(long_run, long_run["last_seen"], CFG)["a"]
    assert now == pytest.approx(1.0 / (1 - 0.5 ** 0.9))  # the geometric series of the decayed weights
    assert 1.0 <= long_run["affinity"]["a"] / now <= 2.0  # stored within a factor 2 of it: no overflow


def test_late_event_weight_is_decayed_back():
    p = run([e(100, cat="a"), e(0, cat="b")])  # the second event is 100 s older
    assert affinity_now(p, T0 + 100_000, CFG)["b"] == pytest.approx(0.5)
    assert p["last_seen"] == T0 + 100_000 and p["first_seen"] == T0


def test_type_weights_and_bounded_categories():
    p = run([e(0, "purchase", cat="a", price=1.0), e(0, "view", cat="b"), e(0, "click", cat="c")])
    assert set(p["affinity"]) == {"a", "c"}  # at most 2 kept: the weakest (b, weight 1) dropped
    assert p["affinity"]["a"] == 5.0 and p["affinity"]["c"] == 2.0
    assert run([e(0, "search", item=None, cat="a")])["affinity"] == {}


def test_last_items_most_recent_first_unique_bounded():
    p = run([e(0, item="a"), e(1, item="b"), e(2, item="a"), e(3, item="c"), e(4, item="d")])
    assert p["last_items"] == ["d", "c", "a"]


def test_replay_detection_by_position():
    p = run([e(0), e(1)])  # last absorbed: Position(0, 1, 0)
    assert is_replay(p, Position(0, 1, 0)) and is_replay(p, Position(0, 0, 5))
    assert not is_replay(p, Position(0, 1, 1)) and not is_replay(p, Position(0, 2, 0))
    assert not is_replay(p, Position(1, 0, 0))  # another partition: not comparable
    assert not is_replay(None, Position(0, 0, 0))


def test_fold_is_deterministic():
    events = [e(i * 7.3, etype=("view", "click")[i % 2], cat=f"c{i % 3}", item=f"i{i % 4}") for i in range(50)]
    assert run(events) == run(events)
    assert not any(math.isnan(v) for v in run(events)["affinity"].values())
