"""score: candidates for a user from what the stream learned, scored in one numpy pass, top-k.

Candidate generators (the first to propose an item names its source):

``covisit``
    neighbours of the user's recent items in the co-visitation graph
    (:class:`~stream.core.relations.ItemRelations`), weight / popularity^0.5;
``category``
    trending items of the user's strongest categories (where events carry categories);
``popular``
    the most popular items (long half-life), then the trending ones (short half-life).

Items the user already consumed are left out (``reconsume="never"``), kept
(``"always"``: music, groceries), or left out until the stream shows that users come back
to items (``"auto"``, the default: see :class:`Reconsumption`); when they are kept the
user's own recent items are candidates too (source ``recent``).

Every candidate carries the same dense features whatever its source (what the ranker sees):

=========  ==================================================================
cov        log of the co-visitation weight with the recent items / the set's largest
cov_norm   log of the same divided by popularity^0.5 / the set's largest
links      share of the recent items that name it as a neighbour
has_cov    1 if it is a neighbour of a recent item at all
pop        log of the long-term popularity / the largest
trend      short-term popularity, log-scaled to 0..1
seen       1 if among the user's recent items (only when re-consumption is on)
=========  ==================================================================

plus the category terms of :mod:`stream.core.model`. Policies: ``model`` (the river model's
export), ``retrieval`` (cov_norm alone, popularity breaking ties), ``popularity``, ``random``.
"""

from __future__ import annotations

import random as _random
from dataclasses import dataclass

import numpy as np

from stream.core.catalog import Catalog, top_k
from stream.core.model import Scorer, pair_features, user_features
from stream.core.relations import ItemRelations

#: log features are log(x / max + EPS): 0 for the strongest candidate, LOG_EPS for none
EPS = 1e-3
LOG_EPS = float(np.log(EPS))
SOURCES = ("covisit", "category", "popular", "recent")
POLICIES = ("model", "retrieval", "popularity", "random")
RECONSUME = ("never", "always", "auto")


@dataclass(frozen=True)
class RecommendConfig:
    k: int = 10
    candidates: int = 200
    top_categories: int = 3
    policy: str = "model"
    #: share of the k slots given to other candidates at random, so the model also learns
    #: what it would not have shown (without it, what is shown is all it ever sees)
    explore: float = 0.1
    reconsume: str = "auto"
    #: share of the candidate slots the co-visitation neighbours may fill
    covisit_share: float = 0.7
    #: exponent of the popularity normalisation of co-visitation weights
    pop_power: float = 0.5


class Reconsumption:
    """Do users come back to items? The decayed share of positive events on an item the user
    had already consumed; ``mask()`` says whether recommendations should leave consumed items out.

    >>> r = Reconsumption()
    >>> r.mask("auto"), r.mask("always"), r.mask("never")
    (True, False, True)
    >>> for i in range(500):
    ...     r.observe(i % 3 == 0)
    >>> round(r.share, 2), r.mask("auto")
    (0.33, False)
    """

    def __init__(self, threshold: float = 0.1, horizon: int = 2000, min_events: int = 200) -> None:
        self.threshold, self.alpha, self.min_events = threshold, 1.0 / horizon, min_events
        self.share, self.events = 0.0, 0

    def observe(self, repeat: bool) -> None:
        self.events += 1
        a = max(self.alpha, 1.0 / self.events)
        self.share += a * ((1.0 if repeat else 0.0) - self.share)

    def mask(self, mode: str) -> bool:
        if mode == "auto":
            return self.events < self.min_events or self.share < self.threshold
        return mode == "never"


class Candidates:
    """One user's candidate set: catalog indices, sources and the dense features."""
    __slots__ = ("catalog", "idx", "source", "dense", "cat_idx")

    def __init__(self, catalog: Catalog, idx: np.ndarray, source: np.ndarray, dense: dict[str, np.ndarray],
                 cat_idx: np.ndarray) -> None:
        self.catalog, self.idx, self.source, self.dense, self.cat_idx = catalog, idx, source, dense, cat_idx

    def __len__(self) -> int:
        return len(self.idx)

    def item(self, j: int) -> str:
        return self.catalog.items[self.idx[j]]

    @property
    def items(self) -> list[str]:
        names = self.catalog.items
        return [names[i] for i in self.idx.tolist()]

    def features_of(self, j: int) -> dict[str, float]:
        return {name: float(col[j]) for name, col in self.dense.items()}


EMPTY_IDX = np.zeros(0, dtype=np.int64)


def _consumed_mask(profile: dict, catalog: Catalog, idx: np.ndarray) -> np.ndarray:
    """True where the user consumed the item (its hash is among the profile's consumed hashes)."""
    raw = profile.get("consumed") or b""
    if not raw:
        return np.zeros(len(idx), dtype=bool)
    held = np.sort(np.frombuffer(raw, dtype="<u4"))  # sort + binary search: ~3x cheaper than isin here
    h = catalog.hashes[idx]
    return held[np.minimum(np.searchsorted(held, h), len(held) - 1)] == h


def candidates(profile: dict, catalog: Catalog, relations: ItemRelations, cfg: RecommendConfig,
               mask: bool = True) -> Candidates:
    """The candidate set of one user."""
    recent = catalog.indices(profile["last_items"][:relations.window]).tolist()
    r_idx, r_w, r_links = relations.scores(recent)
    n_recent = max(1, len(recent))
    r_norm = r_w / np.maximum(relations.popularity(r_idx), 1e-12) ** cfg.pop_power
    n_cov = int(cfg.candidates * cfg.covisit_share)
    # covisit: the best neighbours (a pool twice its slots, so masking still leaves enough)
    pools = [r_idx[top_k(r_norm, 2 * n_cov)] if len(r_idx) else EMPTY_IDX]
    aff = profile["affinity"]
    if aff:
        top_cats = sorted(aff, key=aff.__getitem__, reverse=True)[:cfg.top_categories]
        per = max(1, cfg.candidates // (4 * len(top_cats)))
        pools.append(np.concatenate([catalog.top_in_idx(c, per) for c in top_cats]))
    else:
        pools.append(EMPTY_IDX)
    pools.append(np.concatenate([relations.popular(cfg.candidates), catalog.popular_idx(cfg.candidates // 2)]))
    pools.append(EMPTY_IDX if mask else np.array([i for i in recent if i >= 0], dtype=np.int64))
    idx, src = catalog.first_occurrences(pools)
    keep = ~_consumed_mask(profile, catalog, idx) if mask else np.ones(len(idx), dtype=bool)
    # covisit first (up to its share), then the other sources in order, up to the limit
    chosen = np.flatnonzero(keep & (src == 0))[:n_cov]
    rest = np.flatnonzero(keep & (src > 0))[:max(0, cfg.candidates - len(chosen))]
    sel = np.concatenate([chosen, rest])
    idx, src = idx[sel], src[sel]
    # dense features of every candidate, whatever its source
    if len(r_idx):
        pos = np.minimum(np.searchsorted(r_idx, idx), len(r_idx) - 1)
        hit = r_idx[pos] == idx
        w, norm, links = (np.where(hit, a[pos], 0.0) for a in (r_w, r_norm, r_links))
    else:
        hit = np.zeros(len(idx), dtype=bool)
        w = norm = links = np.zeros(len(idx))
    w_max, n_max = (float(w.max()), float(norm.max())) if len(w) else (0.0, 0.0)
    dense = {"cov": np.log(w / w_max + EPS) if w_max > 0 else np.full(len(w), LOG_EPS),
             "cov_norm": np.log(norm / n_max + EPS) if n_max > 0 else np.full(len(w), LOG_EPS),
             "links": links / n_recent,
             "has_cov": hit.astype(float),
             "pop": np.log(relations.popularity(idx) / max(relations.max_pop(), 1e-12) + EPS),
             "trend": catalog.pop_log(idx)}
    if not mask:
        dense["seen"] = np.isin(idx, np.array(recent, dtype=np.int64)).astype(float)
    cat_idx = np.where(idx >= 0, catalog.cat_idx[np.maximum(idx, 0)], -1)
    return Candidates(catalog, idx, src, dense, cat_idx)


def score(cands: Candidates, user: dict[str, float], catalog: Catalog, scorer: Scorer, policy: str,
          rng: _random.Random | None = None) -> np.ndarray:
    """One score per candidate under ``policy``."""
    if policy == "model":
        return scorer.score_items(user, cands.cat_idx, catalog.category_names, cands.dense)
    if policy == "retrieval":
        return cands.dense["cov_norm"] + 1e-3 * cands.dense["pop"]  # log features: popularity breaks ties
    if policy == "popularity":
        return cands.dense["pop"].astype(float)
    r = rng or _random.Random()
    return np.array([r.random() for _ in range(len(cands))])


def recommend(profile: dict, catalog: Catalog, relations: ItemRelations, scorer: Scorer, cfg: RecommendConfig,
              rng: _random.Random | None = None, mask: bool = True
              ) -> tuple[list[dict], dict[str, float], Candidates]:
    """Top-k items with scores: ``(items, user_features, candidates)``.

    Each item is ``{item_id, score, category, source, features}`` where ``features`` are the
    item-specific model inputs, so feedback can later learn from exactly what was scored.
    """
    cands = candidates(profile, catalog, relations, cfg, mask)
    user = user_features(profile)
    if not len(cands):
        return [], user, cands
    scores = score(cands, user, catalog, scorer, cfg.policy, rng)
    n = len(cands)
    n_explore = int(round(cfg.k * cfg.explore)) if n > cfg.k else 0
    best = list(top_k(scores, cfg.k - n_explore))
    explored: list[int] = []
    if n_explore:
        r = rng or _random.Random()
        taken = set(best)
        explored = r.sample([j for j in range(n) if j not in taken], n_explore)
    names = catalog.category_names
    out = [{"item_id": cands.item(j), "score": float(scores[j]),
            "category": names[cands.cat_idx[j]] if cands.cat_idx[j] >= 0 else None,
            "source": "explore" if j in explored else SOURCES[cands.source[j]],
            "features": cands.features_of(j)} for j in best + explored]
    return out, user, cands


def item_features(user: dict[str, float], item: dict) -> dict[str, float]:
    """The model input of one served item, rebuilt from the recommendation record."""
    return pair_features(user, item.get("category"), item.get("features") or {})
