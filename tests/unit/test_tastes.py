"""Item-level tastes in the synthetic workload, and the simulator's clicks on them: users
browse the items they like, a list is rewarded for its items, popularity is a real baseline."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from stream.simulator import ClosedLoop
from stream.workload import Scenario, Workload


def tastes(**kw) -> Workload:
    return Workload(**{"seed": 9, "users": 60, "items": 800, "categories": 8, "tastes": 8, **kw})


def test_a_tastes_stream_is_deterministic_and_the_category_level_stream_is_unchanged():
    a, b = list(tastes(start_ms=0).events(2000)), list(tastes(start_ms=0).events(2000))
    assert a == b
    plain = [e["item_id"] for e in Workload(seed=9, users=60, items=800, categories=8).events(2000)]
    assert [e["event_id"] for e in a] == [e["event_id"] for e in Workload(seed=9, users=60, items=800,
                                                                            categories=8).events(2000)]
    assert [e["item_id"] for e in a] != plain  # tastes pick other items ...
    cats = tastes().item_category
    assert all(e["category"] == cats[e["item_id"]] for e in a if e["item_id"])  # ... consistently


def test_users_browse_the_items_they_like_and_similar_users_browse_alike():
    g = tastes(revisit=0.0)
    events = [e for e in g.events(20_000) if e["item_id"]]
    liked = np.mean([g.affinity(e["user_id"], e["item_id"]) for e in events])
    catalogue = np.mean([g.affinities(u).mean() for u in range(g.users)])
    assert liked > 5 * catalogue, (liked, catalogue)
    # pairs of users with the closest taste vectors share more browsed items than the farthest pairs
    items = {u: {e["item_id"] for e in events if e["user_id"] == f"u{u}"} for u in range(g.users)}
    sim = g._user_vec @ g._user_vec.T
    np.fill_diagonal(sim, np.nan)
    pairs = sorted(((sim[a, b], a, b) for a in range(g.users) for b in range(a + 1, g.users)))

    def overlap(ps):
        return np.mean([len(items[a] & items[b]) / max(1, len(items[a] | items[b])) for _, a, b in ps])
    assert overlap(pairs[-100:]) > 2 * overlap(pairs[:100])


def repeat_share(g: Workload) -> float:
    """Share of a user's views (after the first) on one of the user's last 10 viewed items."""
    recent: dict[str, list[str]] = {}
    again = views = 0
    for e in g.events(20_000):
        if e["event_type"] != "view" or not e["item_id"]:
            continue
        mine = recent.setdefault(e["user_id"], [])
        if mine:
            views += 1
            again += e["item_id"] in mine
        mine.append(e["item_id"])
        del mine[:-10]
    return again / views


def test_views_revisit_recent_items_at_about_the_set_share():
    chance = repeat_share(tastes(revisit=0.0))  # favourite items come up again by themselves
    expected = 0.3 + 0.7 * chance
    assert expected - 0.04 < repeat_share(tastes(revisit=0.3)) < expected + 0.04, chance


def test_affinity_is_one_for_a_users_top_ten_and_zero_for_strangers():
    g = tastes()
    aff = g.affinities(3)
    assert aff.max() == 1.0 and (aff == 1.0).sum() >= 10 and aff.min() >= 0.0
    top = int(np.argmax(aff))
    assert g.affinity("u3", f"i{top}") == 1.0
    assert g.affinity("someone-else", f"i{top}") == 0.0 and g.affinity("u3", "not-an-item") == 0.0
    assert g.affinity("u999", f"i{top}") == 0.0  # beyond this workload's users
    assert Workload(seed=9, users=5).affinity("u1", "i1") == 0.0  # no tastes: no item-level truth


def test_popularity_is_a_baseline_between_random_and_the_oracle():
    truth = tastes().ground_truth_ctr(10)
    assert truth["ideal"] == 1.0
    assert 3 * truth["random"] < truth["popular"] < 0.8 * truth["ideal"], truth


def test_simulated_clicks_follow_item_tastes_and_their_scenario():
    change = 1_700_000_000_000
    g = tastes(scenario=Scenario("concept", change_at_ms=change))
    sim = SimpleNamespace(wl=g, click_scale=0.5)
    aff = g.affinities(4)
    best = f"i{int(np.argmax(aff))}"
    assert ClosedLoop.p_click(sim, "u4", g.item_category[best], change - 1, best) == pytest.approx(0.5)
    after = ClosedLoop.p_click(sim, "u4", g.item_category[best], change + 1, best)
    assert after == pytest.approx(0.5 * g.affinity("u4", best, change + 1)) and after < 0.5
    assert ClosedLoop.p_click(sim, "x4", g.item_category[best], change - 1, best) == 0.0  # another workload's user
