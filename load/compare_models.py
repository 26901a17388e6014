"""Choose the model family by measurement: progressive validation + ranking quality, offline.

Logged data: for random users, 10 of their 200 candidates shown uniformly at random
(unbiased), each clicked with the simulator's ground-truth probability. Every family
predicts before it learns (progressive log loss, AUC); at the end each ranks the
candidates of held-out requests and we report the true expected CTR of its top-10,
next to popularity, random and the ideal list. Also the cost of learn and predict.

    python -m load.compare_models --examples 60000
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time

from river import facto, linear_model, metrics, optim

from load.bench_score import fold_world
from stream.core.model import pair_features, user_features
from stream.core.recommend import RecommendConfig, candidates
from stream.workload import Workload

CLICK_SCALE = 0.6


def families() -> dict:
    return {
        "logreg (profile x item features)": (lambda: linear_model.LogisticRegression(optimizer=optim.SGD(0.02)), False),
        "fm (same features)": (lambda: facto.FMClassifier(n_factors=8, seed=1, intercept=0.0), False),
        "fm (+ user id, item id)": (lambda: facto.FMClassifier(n_factors=8, seed=1, intercept=0.0), True),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--examples", type=int, default=60_000)
    p.add_argument("--seed", type=int, default=3)
    args = p.parse_args(argv)
    rng = random.Random(args.seed)
    g = Workload(seed=args.seed, users=500)
    cat, rel, profiles = fold_world(g, 50_000)
    users = list(profiles)
    cfg = RecommendConfig()
    sets = {u: candidates(profiles[u], cat, rel, cfg) for u in users}
    cands = {u: c.items for u, c in sets.items()}
    dense = {u: {c.item(j): c.features_of(j) for j in range(len(c))} for u, c in sets.items()}
    feats = {u: user_features(profiles[u]) for u in users}
    truth = lambda u, item: CLICK_SCALE * float(g.user_prefs(u)[int(cat.category_of(item)[1:])])  # noqa: E731

    def x_of(u: str, item: str, with_ids: bool) -> dict:
        x = pair_features(feats[u], cat.category_of(item), dense[u][item])
        if with_ids:
            x[f"u={u}"] = 1.0
            x[f"i={item}"] = 1.0
        return x

    log = []
    while len(log) < args.examples:
        u = rng.choice(users)
        for item in rng.sample(cands[u], 10):
            log.append((u, item, rng.random() < truth(u, item)))
    held_out = rng.sample(users, 200)
    out = {}
    for name, (make, with_ids) in families().items():
        model, loss, auc = make(), 0.0, metrics.ROCAUC()
        t0 = time.perf_counter()
        for u, item, y in log:
            x = x_of(u, item, with_ids)
            pr = min(max(model.predict_proba_one(x)[True], 1e-15), 1 - 1e-15)
            loss -= math.log(pr) if y else math.log(1 - pr)
            auc.update(y, pr)
            model.learn_one(x, y)
        seconds = time.perf_counter() - t0
        ctr = 0.0
        for u in held_out:
            ranked = sorted(cands[u], key=lambda it: -model.predict_proba_one(x_of(u, it, with_ids))[True])[:10]
            ctr += sum(truth(u, it) for it in ranked) / 10
        out[name] = {"progressive_log_loss": round(loss / len(log), 4), "progressive_auc": round(auc.get(), 4),
                     "top10_true_ctr": round(ctr / len(held_out), 4),
                     "us_per_predict_and_learn": round(seconds / len(log) * 1e6, 1)}
        print(f"compare: {name}: {out[name]}", file=sys.stderr)
    pop_ctr = sum(sum(truth(u, it) for it in sorted(cands[u], key=lambda i: -cat.pop_log([i])[0])[:10]) / 10
                  for u in held_out) / len(held_out)
    rand_ctr = sum(sum(truth(u, it) for it in rng.sample(cands[u], 10)) / 10 for u in held_out) / len(held_out)
    ideal = sum(sum(sorted((truth(u, it) for it in cands[u]), reverse=True)[:10]) / 10
                for u in held_out) / len(held_out)
    out["baselines (top10_true_ctr)"] = {"popularity": round(pop_ctr, 4), "random candidate": round(rand_ctr, 4),
                                         "ideal": round(ideal, 4)}
    print(json.dumps({"examples": len(log), **out}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
