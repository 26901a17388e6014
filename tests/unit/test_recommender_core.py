import random

import numpy as np
import pytest

from stream.core.catalog import Catalog, top_k
from stream.core.feedback import FeedbackJoin
from stream.core.learn import Learner
from stream.core.model import export, new_model, pair_features, user_features
from stream.core.profile import Position, ProfileConfig, fold
from stream.core.recommend import RecommendConfig, candidates, item_features, recommend
from stream.workload import Workload

T0 = 1_800_000_000_000


def world(users=30, events=4000, seed=1):
    g = Workload(seed=seed, users=users, items=400, categories=8, start_ms=T0)
    cat, profiles = Catalog(half_life_s=3600), {}
    for i, ev in enumerate(g.events(events)):
        cat.update(ev["item_id"], ev["category"], ev["event_type"], ev["timestamp"])
        profiles[ev["user_id"]] = fold(profiles.get(ev["user_id"]), ev, Position(0, i, 0), ProfileConfig())
    return g, cat, profiles


def trained_model(cat, profiles, g, n=3000, seed=2):
    """A model trained on clicks drawn from the users' true preferences."""
    rng = random.Random(seed)
    m = new_model(lr=0.1)
    users = list(profiles)
    for _ in range(n):
        u = rng.choice(users)
        item = rng.choice(cat.popular(200))
        c = cat.category_of(item)
        y = rng.random() < g.user_prefs(u)[int(c[1:])]
        m.learn_one(pair_features(user_features(profiles[u]), c, float(cat.pop_log([item])[0]),
                                  item in profiles[u]["last_items"]), y)
    return m


def test_vectorised_scores_equal_river_predictions():
    g, cat, profiles = world()
    m = trained_model(cat, profiles, g)
    scorer = export(m, version=3)
    for u, p in list(profiles.items())[:10]:
        items, user, n = recommend(p, cat, scorer, RecommendConfig(k=200, candidates=200, explore=0.0))
        assert n > 50
        for it in items:
            x = item_features(user, it)
            assert it["score"] == pytest.approx(m.predict_proba_one(x)[True], abs=1e-12)


def test_candidates_come_from_the_users_categories_recent_items_and_popularity():
    g, cat, profiles = world()
    p = max(profiles.values(), key=lambda q: q["version"])
    cands = candidates(p, cat, RecommendConfig(candidates=120))
    assert len(cands) == len({c for c, _ in cands}) <= 120
    top = max(p["affinity"], key=p["affinity"].__getitem__)
    assert cat.category_of(cands[0][0]) == top and cands[0][1] == 0
    assert {src for _, src in cands} >= {0, 2}


def test_model_ranks_better_than_popularity_on_ground_truth():
    g, cat, profiles = world(users=40, events=6000)
    scorer = export(trained_model(cat, profiles, g, n=6000), 1)

    def true_ctr(policy):
        total = 0.0
        for u, p in profiles.items():
            items, _, _ = recommend(p, cat, scorer, RecommendConfig(k=10, policy=policy, explore=0.0), rng=random.Random(0))
            total += sum(g.user_prefs(u)[int(it["category"][1:])] for it in items) / len(items)
        return total / len(profiles)
    assert true_ctr("model") > 1.2 * true_ctr("popularity")
    assert true_ctr("model") > 2 * true_ctr("random") or true_ctr("model") > true_ctr("random") + 0.1


def test_top_k_is_sorted_and_stable():
    s = np.array([0.1, 0.9, 0.5, 0.9, 0.2])
    assert list(top_k(s, 3)) == [1, 3, 2]
    assert list(top_k(s, 10)) == [1, 3, 2, 4, 0]


def rec(rec_id, created, items, user="u"):
    return {"rec_id": rec_id, "user_id": user, "created": created, "items": [{"item_id": i} for i in items]}


def test_join_positive_negative_duplicate_and_late():
    j = FeedbackJoin(window_ms=1000)
    j.on_recommendation(rec("r1", 0, ["a", "b", "c"]))
    assert j.on_event("u", "b", "click", 10) == 1
    assert j.on_event("u", "b", "click", 20) == 0 and j.counts["duplicate_click"] == 1
    assert j.on_event("u", "a", "view", 30) == 0  # a view is not a click
    assert j.on_event("other", "a", "click", 30) == 0  # another user's click
    assert j.expire(1000) == []  # the window is still open at its deadline
    assert sorted((i["item_id"], y) for i, y, _ in j.expire(1001)) == [("a", 0), ("b", 1), ("c", 0)]
    assert j.on_event("u", "a", "click", 1500) == 0 and j.counts["late_click"] == 1
    assert j.open_count() == 0 and j.counts["positive"] == 1 and j.counts["negative"] == 2


def test_join_bounds_open_recommendations_per_user():
    j = FeedbackJoin(window_ms=10_000, max_open_per_user=2)
    j.on_recommendation(rec("r1", 0, ["a"]))
    j.on_recommendation(rec("r2", 1, ["b"]))
    closed = j.on_recommendation(rec("r3", 2, ["c"]))
    assert [(i["item_id"], y) for i, y, _ in closed] == [("a", 0)] and j.counts["evicted"] == 1
    assert j.open_count() == 2
    j.on_event("u", "b", "click", 5)
    assert [(i["item_id"], y) for i, y, _ in j.expire(20_000)] == [("b", 1), ("c", 0)]


def test_learner_predicts_before_learning_and_tracks_metrics():
    ln = Learner(new_model(lr=0.2), "reco", 1)
    rng = random.Random(0)
    for i in range(3000):
        y = rng.random() < 0.5
        x = {"aff_share": 1.0 if y else 0.0, "cat=c1": 1.0}
        p = ln.learn(x, int(y), rec_id=f"r{i // 10}", variant="champion", k=10)
        if i == 0:
            assert p == 0.5  # predicted before the first update
    m = ln.metrics("champion")
    assert m["auc"] > 0.95 and m["log_loss"] < 0.3 and 0.45 < m["ctr"] < 0.55
    assert m["hit_rate"] > 0.9 and m["examples"] == 3000
    ln.frozen = True
    before = dict(ln.model.weights)
    ln.learn({"aff_share": 1.0}, 1, "rx", "champion", 10)
    assert dict(ln.model.weights) == before and ln.examples == 3000


def test_score_items_equals_the_matrix_path_and_river():
    g, cat, profiles = world()
    m = trained_model(cat, profiles, g)
    scorer = export(m, 1)
    p = next(iter(profiles.values()))
    cands = [c for c, _ in candidates(p, cat, RecommendConfig())] + ["never-seen-item"]
    idx = cat.indices(cands)
    user = user_features(p)
    pop = cat.pop_log(idx)
    seen = np.array([i in p["last_items"] for i in cands], dtype=float)
    fast = scorer.score_items(user, cat.cat_idx[idx], cat.category_names, pop, seen)
    cats = [cat.category_of(i) for i in cands]
    matrix = scorer.scores(scorer.matrix([pair_features(user, c, float(pp), bool(s))
                                          for c, pp, s in zip(cats, pop, seen)]))
    river = [m.predict_proba_one(pair_features(user, c, float(pp), bool(s)))[True]
             for c, pp, s in zip(cats, pop, seen)]
    assert np.allclose(fast, matrix, atol=1e-12) and np.allclose(fast, river, atol=1e-12)


def test_a_click_is_credited_to_one_recommendation_only():
    j = FeedbackJoin(window_ms=10_000)
    j.on_recommendation(rec("old", 0, ["a", "b"]))
    j.on_recommendation(rec("new", 5, ["a", "c"]))
    assert j.on_event("u", "a", "click", 10) == 1  # no rec_id: the most recent list holding it
    labels = {(r["rec_id"], i["item_id"]): y for i, y, r in j.expire(20_000)}
    assert labels == {("old", "a"): 0, ("old", "b"): 0, ("new", "a"): 1, ("new", "c"): 0}
    j.on_recommendation(rec("x", 30_000, ["a"]))
    j.on_recommendation(rec("y", 30_001, ["a"]))
    assert j.on_event("u", "a", "click", 30_002, rec_id="x") == 1  # the list the click names
    assert j.on_event("u", "a", "click", 30_003, rec_id="x") == 0 and j.counts["duplicate_click"] == 1
    labels = {(r["rec_id"], i["item_id"]): y for i, y, r in j.expire(50_000)}
    assert labels == {("x", "a"): 1, ("y", "a"): 0}
