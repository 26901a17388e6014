"""The real-log drift evaluation: the injected changes, and the replay's view of what the drift worker reads."""

from stream.config import Settings
from stream.replay.inprocess import run_in_process
from stream.replay.log import from_text

from load.drift_real import auto_window_ms, inject

LOG = "user,item,timestamp,rating\n" + "".join(
    f"{u},{item},{t},{r}\n" for t, (u, item, r) in enumerate(
        [("a", "x", 5), ("a", "y", 1), ("b", "x", 5), ("b", "z", 4), ("c", "x", 2), ("c", "y", 5),
         ("a", "z", 5), ("b", "y", 1), ("c", "x", 4), ("a", "x", 5)], start=1000))


def test_the_popularity_swap_reverses_the_item_ranks_from_the_change_on():
    rows = from_text(LOG)
    out = inject(rows, "popularity_swap", 1006_000, 0, 1)
    assert [r.item for r in out[:6]] == [r.item for r in rows[:6]]
    assert [r.item for r in out[6:]] == [{"x": "z", "z": "x", "y": "y"}[r.item] for r in rows[6:]]


def test_the_user_mix_drops_the_users_with_more_positives_after_the_ramp():
    rows = from_text(LOG)
    out = inject(rows, "user_mix", 1005_000, 2_000, 1)  # ramp 1004-1006 s: after it, every event of a dropped user
    kept_late = {r.user for r in out if r.ts_ms >= 1006_000}
    # a: 3 of 4 positives, above the median share (2 of 3): dropped after the ramp
    assert kept_late == {"b", "c"} and [r for r in out if r.ts_ms < 1004_000] == rows[:4]


def test_the_field_break_turns_every_rating_to_zero_or_drops_the_category():
    rows = from_text(LOG)
    out = inject(rows, "field_break", 1005_000, 0, 1)
    assert [r.rating for r in out[5:]] == [0.0] * 5 and out[:5] == rows[:5]
    with_cat = from_text("user,item,timestamp,category\na,x,1,c1\na,y,2,c2\n")
    assert [r.category for r in inject(with_cat, "field_break", 2_000, 0, 1)] == ["c1", None]


def test_the_window_is_the_shortest_whose_median_holds_enough_events():
    rows = from_text("user,item,timestamp\n" + "".join(f"u,i{k},{k * 60}\n" for k in range(1000)))
    assert auto_window_ms(rows, 50) == 3600_000  # 60 events an hour, 10 per 10 minutes


def test_the_in_process_replay_shows_the_drift_worker_its_four_streams():
    seen = {}
    run_in_process(from_text(LOG), 4.0, Settings.load(env={}), on_recommendation=lambda rec: None,
                   observe=lambda topic, rec: seen.setdefault(topic, []).append(rec))
    assert len(seen["clicks.v1"]) == 10 + 5  # 10 interactions, 5 requests (positives of a known user)
    assert len(seen["recommendations.v1"]) == 5
    assert seen["profiles.v1"] and all("last_seen" in p for p in seen["profiles.v1"])
    assert all(fb["variant"] == "organic" for fb in seen.get("feedback.v1", []))
