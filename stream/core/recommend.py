"""score: candidates for a user, scored in one numpy pass, top-k.

Candidate generators (in this order; the first to propose an item names its source):
``category`` (popular items of the user's strongest categories), ``related`` (popular
items of the categories of the user's recent items), ``popular`` (global popularity).
Policies: ``model`` (the exported model), ``popularity`` and ``random`` (baselines).
"""

from __future__ import annotations

import random as _random
from dataclasses import dataclass

import numpy as np

from stream.core.catalog import Catalog, merge_unique, top_k
from stream.core.model import Scorer, pair_features, user_features

SOURCES = ("category", "related", "popular")


@dataclass(frozen=True)
class RecommendConfig:
    k: int = 10
    candidates: int = 200
    top_categories: int = 3
    policy: str = "model"  # model | popularity | random
    #: share of the k slots given to other candidates at random, so the model also learns
    #: what it would not have shown (without it, what is shown is all it ever sees)
    explore: float = 0.1


def candidates(profile: dict, catalog: Catalog, cfg: RecommendConfig) -> list[tuple[str, int]]:
    aff = profile["affinity"]
    top_cats = sorted(aff, key=aff.__getitem__, reverse=True)[:cfg.top_categories]
    per = max(1, cfg.candidates // max(1, len(top_cats) + 1))
    by_cat = [item for c in top_cats for item in catalog.top_in(c, per)]
    recent_cats = []
    for item in profile["last_items"][:3]:
        c = catalog.category_of(item)
        if c and c not in recent_cats and c not in top_cats:
            recent_cats.append(c)
    related = [item for c in recent_cats for item in catalog.top_in(c, per // 2 or 1)]
    return merge_unique(by_cat, related, catalog.popular(cfg.candidates), limit=cfg.candidates)


def recommend(profile: dict, catalog: Catalog, scorer: Scorer, cfg: RecommendConfig,
              rng: _random.Random | None = None) -> tuple[list[dict], dict[str, float], int]:
    """Top-k items with scores: ``(items, user_features, candidates_scored)``.

    Each item is ``{item_id, score, category, source, features}`` where ``features`` are the
    item-specific model inputs, so feedback can later learn from exactly what was scored.
    """
    cands = candidates(profile, catalog, cfg)
    if not cands:
        return [], user_features(profile), 0
    items = [c[0] for c in cands]
    idx = catalog.indices(items)
    cat_idx = catalog.cat_idx[idx]
    pop = catalog.pop_log(idx)
    recent = catalog.indices(profile["last_items"])
    seen = np.isin(idx, recent[recent >= 0]).astype(float)
    user = user_features(profile)
    names = catalog.category_names
    if cfg.policy == "model":
        scores = scorer.score_items(user, cat_idx, names, pop, seen)
    elif cfg.policy == "popularity":
        scores = pop.astype(float)
    else:
        r = rng or _random.Random()
        scores = np.array([r.random() for _ in items])
    n_explore = int(round(cfg.k * cfg.explore)) if len(items) > cfg.k else 0
    best = list(top_k(scores, cfg.k - n_explore))
    explored: list[int] = []
    if n_explore:
        r = rng or _random.Random()
        rest = [j for j in range(len(items)) if j not in set(best)]
        explored = r.sample(rest, n_explore)
    out = [{"item_id": items[j], "score": float(scores[j]), "category": names[cat_idx[j]] if cat_idx[j] >= 0 else None,
            "source": "explore" if j in explored else SOURCES[cands[j][1]],
            "features": {"pop": float(pop[j]), "seen": float(seen[j])}} for j in best + explored]
    return out, user, len(items)


def item_features(user: dict[str, float], item: dict) -> dict[str, float]:
    """The model input of one served item, rebuilt from the recommendation record."""
    f = item.get("features") or {}
    return pair_features(user, item.get("category"), f.get("pop", 0.0), bool(f.get("seen", 0.0)))
