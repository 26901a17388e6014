"""Benchmark: score top-10 of 200 candidates per request, vectorised vs river predict_proba_one.

Both paths score the same candidates of the same users with the same trained model;
the script checks the scores agree, then times whole requests (candidate generation,
features, scoring, top-k) and the scoring step alone.

    python -m load.bench_score --requests 2000
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time

import numpy as np

from stream.core.catalog import Catalog, top_k
from stream.core.model import export, new_model, pair_features, user_features
from stream.core.profile import Position, ProfileConfig, fold
from stream.core.recommend import RecommendConfig, candidates, recommend
from stream.core.relations import ItemRelations
from stream.stages.score import Retrieval
from stream.workload import Workload


def fold_world(g: Workload, events: int) -> tuple[Catalog, ItemRelations, dict]:
    """Catalog, item relations and profiles folded from ``events`` of ``g`` as the retrieve
    stage (which sees the user before the event) and the profile stage fold them."""
    retrieval, profiles = Retrieval(Catalog(), ItemRelations()), {}
    for i, ev in enumerate(g.events(events)):
        before = profiles.get(ev["user_id"])
        if ev["item_id"]:
            retrieval.fold(ev["item_id"], ev["category"], ev["event_type"], before["last_items"] if before else [],
                           ev["timestamp"])
        profiles[ev["user_id"]] = fold(before, ev, Position(0, i, 0), ProfileConfig())
    return retrieval.catalog, retrieval.relations, profiles


def build(users: int, events: int, seed: int):
    """A folded world and a model trained on the serving features."""
    g = Workload(seed=seed, users=users, items=5000, categories=20)
    cat, rel, profiles = fold_world(g, events)
    rng, m = random.Random(seed), new_model()
    users = list(profiles)
    for _ in range(5000):
        u = rng.choice(users)
        cands = candidates(profiles[u], cat, rel, RecommendConfig())
        j = rng.randrange(len(cands))
        c = cat.category_of(cands.item(j))
        m.learn_one(pair_features(user_features(profiles[u]), c, cands.features_of(j)),
                    rng.random() < g.user_prefs(u)[int(c[1:])])
    return cat, rel, profiles, m


def quantiles(xs: list[float]) -> dict:
    xs = sorted(xs)
    return {"p50_us": round(xs[len(xs) // 2] * 1e6, 1), "p99_us": round(xs[int(len(xs) * 0.99)] * 1e6, 1),
            "mean_us": round(statistics.fmean(xs) * 1e6, 1)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--requests", type=int, default=2000)
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args(argv)
    cat, rel, profiles, model = build(users=2000, events=100_000, seed=args.seed)
    scorer = export(model, 1)
    cfg = RecommendConfig(k=10, candidates=200, explore=0.0)
    users = list(profiles.values())
    rng = random.Random(args.seed)
    sample = [rng.choice(users) for _ in range(args.requests)]
    fast, slow, fast_score_only, cand_only, n_cands, max_diff = [], [], [], [], [], 0.0
    for prof in sample:
        t0 = time.perf_counter()
        items, user, cands = recommend(prof, cat, rel, scorer, cfg)
        fast.append(time.perf_counter() - t0)
        n_cands.append(len(cands))
        t0 = time.perf_counter()
        cands = candidates(prof, cat, rel, cfg)
        cand_only.append(time.perf_counter() - t0)
        # the slow path: river predict_proba_one per candidate, same candidates
        t0 = time.perf_counter()
        u = user_features(prof)
        river_scores = np.array([model.predict_proba_one(pair_features(u, cat.category_of(cands.item(j)),
                                                                       cands.features_of(j)))[True]
                                 for j in range(len(cands))])
        best = top_k(river_scores, 10)
        slow.append(time.perf_counter() - t0 + cand_only[-1])
        # the scoring step alone, vectorised
        t0 = time.perf_counter()
        s = scorer.score_items(u, cands.cat_idx, cat.category_names, cands.dense)
        top_k(s, 10)
        fast_score_only.append(time.perf_counter() - t0)
        max_diff = max(max_diff, float(np.max(np.abs(s - river_scores))))
        assert [items[i]["item_id"] for i in range(10)] == [cands.item(j) for j in best] or max_diff < 1e-9
    out = {"requests": args.requests, "candidates_mean": statistics.fmean(n_cands),
           "max_abs_score_difference": max_diff,
           "vectorised_request": quantiles(fast), "vectorised_scoring_only": quantiles(fast_score_only),
           "candidate_generation": quantiles(cand_only),
           "river_predict_one_request": quantiles(slow),
           "speedup_request_p50": round(statistics.median(slow) / statistics.median(fast), 1)}
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
