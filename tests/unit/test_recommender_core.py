import random

import numpy as np
import pytest

from stream.core.catalog import Catalog, top_k
from stream.core.feedback import FeedbackJoin
from stream.core.learn import Learner
from stream.core.model import export, new_model, pair_features, user_features
from stream.core.profile import Position, ProfileConfig, consumed, fold
from stream.core.recommend import SOURCES, Reconsumption, RecommendConfig, candidates, item_features, recommend
from stream.core.relations import ItemRelations
from stream.workload import Workload

T0 = 1_800_000_000_000


def world(users=30, events=4000, seed=1):
    """Catalog, item relations and profiles folded from a synthetic stream, as the retrieve and
    profile stages fold them (relations see the user's items before the event)."""
    g = Workload(seed=seed, users=users, items=400, categories=8, start_ms=T0)
    cat, rel, profiles = Catalog(half_life_s=3600), ItemRelations(half_life_s=86400), {}
    for i, ev in enumerate(g.events(events)):
        before = profiles.get(ev["user_id"])
        recent = [cat.index.get(h, -1) for h in (before["last_items"] if before else [])]
        j = cat.update(ev["item_id"], ev["category"], ev["event_type"], ev["timestamp"])
        if j >= 0:
            rel.update(j, recent, 1.0, ev["timestamp"])
        profiles[ev["user_id"]] = fold(before, ev, Position(0, i, 0), ProfileConfig())
    return g, cat, rel, profiles


def trained_model(cat, rel, profiles, g, n=3000, seed=2):
    """A model trained on clicks drawn from the users' true preferences, on the serving features."""
    rng = random.Random(seed)
    m = new_model(lr=0.1, prior=False)
    users = list(profiles)
    for _ in range(n):
        u = rng.choice(users)
        cands = candidates(profiles[u], cat, rel, RecommendConfig(), mask=False)
        j = rng.randrange(len(cands))
        c = cat.category_of(cands.item(j))
        y = rng.random() < g.user_prefs(u)[int(c[1:])]
        m.learn_one(pair_features(user_features(profiles[u]), c, cands.features_of(j)), y)
    return m


def test_vectorised_scores_equal_river_predictions():
    g, cat, rel, profiles = world()
    m = trained_model(cat, rel, profiles, g)
    scorer = export(m, version=3)
    for u, p in list(profiles.items())[:10]:
        items, user, cands = recommend(p, cat, rel, scorer, RecommendConfig(k=200, candidates=200, explore=0.0))
        assert len(cands) > 50
        for it in items:
            x = item_features(user, it)
            assert it["score"] == pytest.approx(m.predict_proba_one(x)[True], abs=1e-12)


def test_candidates_come_from_neighbours_categories_and_popularity_and_leave_consumed_items_out():
    g, cat, rel, profiles = world()
    p = max(profiles.values(), key=lambda q: q["version"])
    cands = candidates(p, cat, rel, RecommendConfig(candidates=120))
    items = cands.items
    assert len(items) == len(set(items)) <= 120
    assert {SOURCES[s] for s in cands.source} >= {"covisit", "popular"}
    assert not set(items) & set(p["last_items"])  # consumed: left out
    assert all(consumed(p, i) is False for i in items)
    again = candidates(p, cat, rel, RecommendConfig(candidates=120), mask=False)
    assert set(again.items) & set(p["last_items"])  # re-consumption on: the user's own items come back
    assert again.dense["seen"].max() == 1.0
    # the covisit candidates are the recent items' neighbours, best first by weight / popularity^0.5
    cov = [cands.idx[j] for j in range(len(cands)) if SOURCES[cands.source[j]] == "covisit"]
    recent = cat.indices(p["last_items"][:rel.window]).tolist()
    best = [i for i, _ in rel.related(recent, exclude=set(cat.indices(list(p["last_items"])).tolist())
                                      | {k for k, it in enumerate(cat.items) if consumed(p, it)}, n=5)]
    assert cov[:5] == best


def test_model_ranks_better_than_popularity_on_ground_truth():
    g, cat, rel, profiles = world(users=40, events=6000)
    scorer = export(trained_model(cat, rel, profiles, g, n=6000), 1)

    def true_ctr(policy):
        total = 0.0
        for u, p in profiles.items():
            items, _, _ = recommend(p, cat, rel, scorer, RecommendConfig(k=10, policy=policy, explore=0.0),
                                    rng=random.Random(0))
            total += sum(g.user_prefs(u)[int(it["category"][1:])] for it in items) / len(items)
        return total / len(profiles)
    assert true_ctr("model") > 1.2 * true_ctr("popularity")
    assert true_ctr("model") > 2 * true_ctr("random") or true_ctr("model") > true_ctr("random") + 0.1


def test_reconsumption_auto_masks_until_users_come_back_to_items():
    r = Reconsumption(threshold=0.1, horizon=100, min_events=50)
    for _ in range(300):
        r.observe(False)
    assert r.mask("auto") and r.share == 0.0
    for i in range(300):
        r.observe(i % 2 == 0)
    assert not r.mask("auto") and 0.4 < r.share < 0.6
    assert r.mask("never") and not r.mask("always")


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
    ln = Learner(new_model(lr=0.2, prior=False), "reco", 1)
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


def test_releases_serve_the_averaged_weights_and_served_feedback_can_be_weighted_out():
    ln = Learner(new_model(lr=0.5, prior=False), "reco", 1, average_over=200, weights={"champion": 0.0})
    raw = []
    for i in range(2000):
        ln.learn({"x": 1.0}, i % 2, f"r{i}", "organic", 1)
        raw.append(ln.model.weights["x"])
    served = ln.serving_model().weights["x"]
    assert max(raw[-200:]) - min(raw[-200:]) > 0.1  # SGD swings from example to example
    assert abs(served - sum(raw[-600:]) / 600) < 0.02  # the release holds their average
    assert ln.model.weights["x"] == raw[-1]  # learning goes on from the latest weights
    before = dict(ln.model.weights)
    p = ln.learn({"x": 1.0}, 1, "s1", "champion", 10)  # weight 0: scored, counted, not learned
    assert dict(ln.model.weights) == before and ln.metrics("champion")["examples"] == 1 and 0 < p < 1
    plain = Learner(new_model(), "reco", 1, average_over=0)
    assert plain.serving_model() is plain.model


def test_score_items_equals_the_matrix_path_and_river():
    g, cat, rel, profiles = world()
    m = trained_model(cat, rel, profiles, g)
    scorer = export(m, 1)
    p = next(iter(profiles.values()))
    cands = candidates(p, cat, rel, RecommendConfig(), mask=False)
    user = user_features(p)
    fast = scorer.score_items(user, cands.cat_idx, cat.category_names, cands.dense)
    rows = [pair_features(user, cat.category_of(cands.item(j)), cands.features_of(j)) for j in range(len(cands))]
    rows.append(pair_features(user, None, {"cov": -6.9, "pop": -6.9}))  # an item the model knows nothing of
    fast = np.append(fast, scorer.score_items(user, np.array([-1]), cat.category_names,
                                              {"cov": np.array([-6.9]), "pop": np.array([-6.9])}))
    matrix = scorer.scores(scorer.matrix(rows))
    river = [m.predict_proba_one(x)[True] for x in rows]
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
