"""The item catalog as the stream sees it: decayed popularity and item -> category.

Fixed-size and pure: ``update()`` per event, ``popular()`` / ``top_in()`` for candidate
generation, numpy views for vectorised feature building. Popularity decays with a
half-life in event time, so yesterday's hits fade.

>>> c = Catalog(half_life_s=3600)
>>> for i, item in enumerate(["a", "b", "a", "b", "c", "a"]):
...     _ = c.update(item, "x" if item != "c" else "y", "click", 1_000 + i)
>>> c.popular(2)
['a', 'b']
>>> c.top_in("y", 5), c.category_of("a")
(['c'], 'x')
"""

from __future__ import annotations

import math

import numpy as np

from stream.core.profile import item_hash

_UNSEEN = np.iinfo(np.int64).max

#: how much one event of a type adds to an item's popularity
POP_WEIGHT = {"view": 1.0, "click": 2.0, "add_to_cart": 3.0, "purchase": 5.0}


class Catalog:
    def __init__(self, half_life_s: float = 6 * 3600.0, max_items: int = 2_000_000, refresh_every: int = 2000) -> None:
        self.half_life_ms = half_life_s * 1000
        self.max_items = max_items
        self.refresh_every = refresh_every
        self.t_ref = 0            # popularity values are scaled to 2^((t - t_ref)/half_life)
        self.index: dict[str, int] = {}
        self.items: list[str] = []
        self.cat_of: list[str] = []
        self.pop = np.zeros(1024)
        self.cat_idx = np.full(1024, -1, dtype=np.int64)  # category index per item (-1: none)
        self.hashes = np.zeros(1024, dtype=np.uint32)       # item_hash() per item (consumption masks)
        self._first = np.full(1024, _UNSEEN, dtype=np.int64)  # scratch of first_occurrences(), kept at _UNSEEN
        self._pop_max = 0.0                                  # pop's largest value (pop only grows between rebases)
        self.categories: dict[str, int] = {}
        self.category_names: list[str] = []
        self._since_refresh = refresh_every
        self._popular_idx = np.zeros(0, dtype=np.int64)
        self._by_cat: dict[int, np.ndarray] = {}

    def update(self, item: str | None, category: str | None, event_type: str, ts: int) -> int:
        """Count one event on ``item``; returns its index (-1: no item, not counted, or catalog full)."""
        w = POP_WEIGHT.get(event_type)
        if not item or not w:
            return -1
        if self.t_ref == 0:
            self.t_ref = ts
        i = self.index.get(item)
        if i is None:
            if len(self.items) >= self.max_items:
                return -1  # full: new items are not learned
            i = self.index[item] = len(self.items)
            self.items.append(item)
            self.cat_of.append(category or "")
            if i >= len(self.pop):
                self.pop = np.concatenate([self.pop, np.zeros(len(self.pop))])
                self.cat_idx = np.concatenate([self.cat_idx, np.full(len(self.cat_idx), -1, dtype=np.int64)])
                self.hashes = np.concatenate([self.hashes, np.zeros(len(self.hashes), dtype=np.uint32)])
                self._first = np.concatenate([self._first, np.full(len(self._first), _UNSEEN, dtype=np.int64)])
            self.hashes[i] = item_hash(item)
            if category:
                if category not in self.categories:
                    self.categories[category] = len(self.category_names)
                    self.category_names.append(category)
                self.cat_idx[i] = self.categories[category]
        scale = (ts - self.t_ref) / self.half_life_ms
        if scale > 30:  # rebase before the scale factors overflow
            self.pop *= 2.0 ** -scale
            self._pop_max *= 2.0 ** -scale
            self.t_ref, scale = ts, 0.0
        self.pop[i] += w * 2.0 ** scale
        if self.pop[i] > self._pop_max:
            self._pop_max = float(self.pop[i])
        self._since_refresh += 1
        return i

    def _refresh(self) -> None:
        if self._since_refresh < self.refresh_every:
            return
        self._since_refresh = 0
        n = len(self.items)
        order = np.argsort(-self.pop[:n], kind="stable")
        self._popular_idx = order[:1000]
        by_cat: dict[int, list[int]] = {}
        cats = self.cat_idx[order]
        for i, c in zip(order[cats >= 0].tolist(), cats[cats >= 0].tolist()):
            lst = by_cat.setdefault(c, [])
            if len(lst) < 200:
                lst.append(i)
        self._by_cat = {c: np.array(v, dtype=np.int64) for c, v in by_cat.items()}

    def popular(self, n: int) -> list[str]:
        self._refresh()
        return [self.items[i] for i in self._popular_idx[:n].tolist()]

    def popular_idx(self, n: int) -> np.ndarray:
        self._refresh()
        return self._popular_idx[:n]

    def top_in(self, category: str, n: int) -> list[str]:
        return [self.items[i] for i in self.top_in_idx(category, n)]

    def top_in_idx(self, category: str, n: int) -> np.ndarray:
        self._refresh()
        c = self.categories.get(category)
        return self._by_cat[c][:n] if c is not None and c in self._by_cat else np.zeros(0, dtype=np.int64)

    def category_of(self, item: str) -> str | None:
        i = self.index.get(item)
        return self.cat_of[i] if i is not None and self.cat_of[i] else None

    def indices(self, items: list[str]) -> np.ndarray:
        """Catalog indices of items (-1 for unknown ones)."""
        get = self.index.get
        return np.fromiter((get(it, -1) for it in items), dtype=np.int64, count=len(items))

    def pop_log(self, items: list[str] | np.ndarray) -> np.ndarray:
        """log1p of each item's popularity relative to the most popular item (0..1-ish)."""
        idx = items if isinstance(items, np.ndarray) else self.indices(items)
        top = self._pop_max if self.items else 1.0
        vals = np.where(idx >= 0, self.pop[np.maximum(idx, 0)], 0.0)
        return np.log1p(vals) / math.log1p(top) if top > 0 else vals

    def first_occurrences(self, pools: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """The item indices of several pools, each once, in pool order; with the index of its
        pool (-1 entries skipped). One ``minimum.at`` into a scratch row of the catalogue, not a
        sort: ~2.5x cheaper than ``unique(return_index=True)`` at 700 entries."""
        allidx = np.concatenate(pools)
        src = np.concatenate([np.full(len(p), s, dtype=np.int64) for s, p in enumerate(pools)])
        ok = (allidx >= 0) & (allidx < len(self.items))
        allidx, src = allidx[ok], src[ok]
        pos = np.arange(len(allidx))
        first = self._first
        np.minimum.at(first, allidx, pos)
        keep = first[allidx] == pos
        first[allidx] = _UNSEEN
        return allidx[keep], src[keep]


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest scores, best first."""
    if len(scores) <= k:
        return np.argsort(-scores, kind="stable")
    part = np.argpartition(-scores, k)[:k]
    return part[np.argsort(-scores[part], kind="stable")]

