"""Item-to-item relations learned from the stream: time-decayed co-visitation, bounded per item.

When a user interacts with item ``j``, every item ``h`` among the user's recent items (most
recent first, ``d`` = 1, 2, ...) gets ``j`` as a neighbour with weight ``w / d`` (forward) and
``j`` gets ``h`` with ``backward * w / d``; ``w`` is the event type's weight. Weights decay
with a half-life in event time (stored as of ``t_ref``, like the profile's affinity, so an
update costs one power, not a pass over every row).

Bounded state: each item keeps at most ``width`` neighbours. A new neighbour of a full row
replaces the lightest one, with its own weight only. (Space-Saving's rule, starting at the
lightest weight plus its own, bounds the error but inflates newcomers: normalised by their
small popularity they crowded the lists of rare items; measured: HR@10 0.077 against 0.168.)
Decay makes room: old neighbours fade against new ones, so a row follows what users do now. A row is two
``array`` objects (int32 ids, float32 weights): 872 B as allocated for a full row at the
default width of 80 (arrays over-allocate as they grow), plus 8 B of list slot and 8-16 B of
popularity; long-tail items hold fewer.

Popularity (``pop``) is each item's decayed event weight on the same scale, so scores can
be normalised against it (a co-visit with a blockbuster says less than with a niche item).

Items are integer ids (the catalog's indices): ``a=0, b=1, c=2`` here.

>>> r = ItemRelations(half_life_s=0)
>>> for user_items in ([0, 1, 2], [0, 1], [1, 2]):
...     recent = []
...     for item in user_items:
...         r.update(item, recent, 1.0, 0)
...         recent.insert(0, item)
>>> sorted(r.neighbours(0).items())
[(1, 2.0), (2, 0.5)]
>>> [item for item, _ in r.related([2], exclude={2})]
[1, 0]
"""

from __future__ import annotations

import sys
from array import array

import numpy as np

from stream.core.catalog import top_k


class ItemRelations:
    """Rows indexed by the catalog's item indices (:class:`~stream.core.catalog.Catalog` owns the ids)."""

    def __init__(self, width: int = 80, window: int = 10, half_life_s: float = 30 * 86400.0,
                 backward: float = 1.0) -> None:
        self.width, self.window, self.backward = width, window, backward
        self.half_life_ms = half_life_s * 1000  # 0: no decay
        self.t_ref: int | None = None
        self.ids: list[array] = []   # per item: neighbour indices (int32)
        self.ws: list[array] = []    # per item: their weights (float32, as of t_ref)
        self.pop = np.zeros(1024)    # per item: decayed event weight (as of t_ref)
        self.updates = 0
        self.refresh_every = 1000
        self._popular = np.zeros(0, dtype=np.int64)
        self._max_pop = 0.0
        self._refreshed_at = -1

    # -- writing -------------------------------------------------------------------------------
    def _grow(self, i: int) -> None:
        while len(self.ids) <= i:
            self.ids.append(array("i"))
            self.ws.append(array("f"))
        if i >= len(self.pop):
            self.pop = np.concatenate([self.pop, np.zeros(max(len(self.pop), i + 1 - len(self.pop)))])

    def _scale(self, ts: int) -> float:
        """Weight multiplier of an event at ``ts`` (rebasing every row when it would overflow)."""
        if not self.half_life_ms:
            return 1.0
        if self.t_ref is None:
            self.t_ref = ts
        e = (ts - self.t_ref) / self.half_life_ms
        if e > 60:  # float32 holds 2^127: bring every stored weight to the new reference
            self._rebase(ts)
            e = 0.0
        return 2.0 ** max(e, -60.0)

    def _rebase(self, ts: int) -> None:
        f = 2.0 ** (-(ts - self.t_ref) / self.half_life_ms)
        for w in self.ws:
            if w:
                np.frombuffer(w, dtype=np.float32)[:] *= f  # a temporary view: the array may grow later
        self.pop *= f
        self.t_ref = ts
        self._refreshed_at = -1  # the cached largest popularity is on the old scale

    def _add(self, i: int, j: int, w: float) -> None:
        ids, ws = self.ids[i], self.ws[i]
        # a membership test, then an index when present: cheaper than one index() whose
        # ValueError for a new neighbour (the common case) costs more than the second scan
        if j in ids:
            ws[ids.index(j)] += w
        elif len(ids) < self.width:
            ids.append(j)
            ws.append(w)
        else:  # full: the newcomer takes the lightest slot, with its own weight
            k = ws.index(min(ws))
            ids[k] = j
            ws[k] = w

    def update(self, item: int, recent: list[int], weight: float, ts: int) -> None:
        """Fold one interaction with ``item`` by a user whose recent items (before it, most recent
        first; -1 for unknown) are ``recent``."""
        if item < 0 or weight <= 0:
            return
        top = max(item, max(recent, default=-1))
        if top >= len(self.ids):
            self._grow(top)
        s = weight * self._scale(ts)
        self.pop[item] += s
        self.updates += 1
        add, back, window = self._add, self.backward, self.window
        d = 0
        for h in recent:
            if h == item:
                continue
            d += 1
            if d > window:
                break
            if h < 0:
                continue
            add(h, item, s / d)
            if back:
                add(item, h, back * s / d)

    def merge(self, other: "ItemRelations") -> None:
        """Add another worker's relations (same item ids) into these, brought to this reference time."""
        f = 1.0
        if self.half_life_ms and other.t_ref is not None:
            if self.t_ref is None:
                self.t_ref = other.t_ref
            f = 2.0 ** ((other.t_ref - self.t_ref) / self.half_life_ms)
        n = len(other.ids)
        if n:
            self._grow(n - 1)
        self.pop[:n] += other.pop[:n] * f
        for i in range(n):
            for j, w in zip(other.ids[i], other.ws[i]):
                self._add(i, j, w * f)
        self.updates += other.updates

    # -- reading -------------------------------------------------------------------------------
    def neighbours(self, item: int) -> dict[int, float]:
        """The stored neighbours of ``item`` with their weights (as of ``t_ref``)."""
        if item < 0 or item >= len(self.ids):
            return {}
        return dict(zip(self.ids[item], self.ws[item]))

    def scores(self, recent: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Neighbours of the user's recent items: ``(item indices (sorted), weight, links)``.

        ``weight`` sums ``w(h, j) / d`` over the recent items ``h`` (``d`` their position),
        ``links`` counts the recent items that name ``j``. Vectorised: one concatenation and one
        ``bincount`` over at most ``window * width`` entries."""
        rows_i, rows_w = [], []
        n = len(self.ids)
        for d, h in enumerate(recent[:self.window], start=1):
            if h < 0 or h >= n or not self.ids[h]:
                continue
            rows_i.append(np.frombuffer(self.ids[h], dtype=np.int32))
            rows_w.append(np.frombuffer(self.ws[h], dtype=np.float32) / d)
        if not rows_i:
            return np.zeros(0, dtype=np.int64), np.zeros(0), np.zeros(0)
        ids = np.concatenate(rows_i)
        ws = np.concatenate(rows_w).astype(np.float64)
        uniq, inv = np.unique(ids, return_inverse=True)
        return uniq.astype(np.int64), np.bincount(inv, weights=ws), np.bincount(inv).astype(np.float64)

    def popularity(self, idx: np.ndarray) -> np.ndarray:
        """Decayed popularity of item indices (0 for -1 or unknown), as of ``t_ref``."""
        ok = (idx >= 0) & (idx < len(self.pop))
        return np.where(ok, self.pop[np.where(ok, idx, 0)], 0.0)

    def related(self, recent: list[int], exclude: set[int] | frozenset[int] = frozenset(),
                n: int = 10, pop_power: float = 0.5) -> list[tuple[int, float]]:
        """The ``n`` best neighbours of the recent items, weight / popularity^pop_power."""
        idx, w, _ = self.scores(recent)
        if not len(idx):
            return []
        score = w / np.maximum(self.popularity(idx), 1e-12) ** pop_power
        out = []
        for k in np.argsort(-score, kind="stable"):
            if int(idx[k]) not in exclude:
                out.append((int(idx[k]), float(score[k])))
                if len(out) >= n:
                    break
        return out

    def _refresh(self) -> None:
        if self._refreshed_at >= 0 and self.updates - self._refreshed_at < self.refresh_every:
            return
        self._refreshed_at = self.updates
        self._max_pop = float(self.pop.max()) if len(self.pop) else 0.0
        best = top_k(self.pop, 1000)
        self._popular = best[self.pop[best] > 0]

    def popular(self, n: int) -> np.ndarray:
        """Indices of the ``n`` most popular items (long half-life; refreshed every ``refresh_every`` updates)."""
        self._refresh()
        return self._popular[:n]

    def max_pop(self) -> float:
        self._refresh()
        return self._max_pop

    def nbytes(self) -> int:
        """Bytes held by the rows (as allocated: arrays over-allocate when they grow), their list
        slots and the popularity array."""
        return sum(sys.getsizeof(ids) + sys.getsizeof(ws) for ids, ws in zip(self.ids, self.ws)) \
            + 8 * len(self.ids) + self.pop.nbytes

    def __len__(self) -> int:
        return len(self.ids)
