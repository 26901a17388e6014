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
When one event brings several newcomers to a full row, they replace that many of its
lightest entries (newcomers of the same event do not evict each other).
Decay makes room: old neighbours fade against new ones, so a row follows what users do now.

The rows are two matrices of ``width`` columns (int32 ids, -1 for a free slot; float32
weights) and a fill count per row, so one event's updates are a few vectorised operations
over the rows it touches, not a Python loop over them. Memory is fixed per item whatever its
row holds: ``8 * width + 4`` bytes (644 B at the default width of 80) plus 8 B of
popularity, as allocated; the matrices grow by half when an item index passes their end.

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

import numpy as np

from stream.core.catalog import top_k

_NO_ROWS = np.zeros(0, dtype=np.int64)


class ItemRelations:
    """Rows indexed by the catalog's item indices (:class:`~stream.core.catalog.Catalog` owns the ids)."""

    def __init__(self, width: int = 80, window: int = 10, half_life_s: float = 30 * 86400.0,
                 backward: float = 1.0, capacity: int = 1024) -> None:
        self.width, self.window, self.backward = width, window, backward
        self.half_life_ms = half_life_s * 1000  # 0: no decay
        self.t_ref: int | None = None
        self.n = 0                                                   # rows in use: item indices < n
        self.nid = np.full((capacity, width), -1, dtype=np.int32)    # neighbour indices, -1: free
        self.nw = np.zeros((capacity, width), dtype=np.float32)      # their weights (as of t_ref)
        self.fill = np.zeros(capacity, dtype=np.int32)               # used slots per row
        self.pop = np.zeros(capacity)                                # decayed event weight (as of t_ref)
        self.updates = 0
        self.refresh_every = 1000
        self._popular = np.zeros(0, dtype=np.int64)
        self._max_pop = 0.0
        self._refreshed_at = -1

    # -- writing -------------------------------------------------------------------------------
    def _grow(self, i: int) -> None:
        """Make rows 0..i usable."""
        if i >= len(self.fill):
            cap = max(i + 1, len(self.fill) + len(self.fill) // 2)
            extra = cap - len(self.fill)
            self.nid = np.concatenate([self.nid, np.full((extra, self.width), -1, dtype=np.int32)])
            self.nw = np.concatenate([self.nw, np.zeros((extra, self.width), dtype=np.float32)])
            self.fill = np.concatenate([self.fill, np.zeros(extra, dtype=np.int32)])
            self.pop = np.concatenate([self.pop, np.zeros(extra)])
        self.n = max(self.n, i + 1)

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
        self.nw[:self.n] *= np.float32(f)
        self.pop *= f
        self.t_ref = ts
        self._refreshed_at = -1  # the cached largest popularity is on the old scale

    def _add_to_rows(self, rows: np.ndarray, j: int, w: np.ndarray) -> None:
        """Add neighbour ``j`` with weight ``w[k]`` to each row ``rows[k]`` (distinct rows)."""
        hit = self.nid[rows] == j
        found = hit.any(axis=1)
        if found.any():
            self.nw[rows[found], hit[found].argmax(axis=1)] += w[found]
            if found.all():
                return
            rows, w = rows[~found], w[~found]
        slot = self.fill[rows]
        room = slot < self.width
        r = rows[room]
        self.nid[r, slot[room]] = j
        self.nw[r, slot[room]] = w[room]
        self.fill[r] += 1
        if not room.all():  # full: the newcomer takes the lightest slot, with its own weight
            r = rows[~room]
            k = self.nw[r].argmin(axis=1)
            self.nid[r, k] = j
            self.nw[r, k] = w[~room]

    def _add_to_row(self, i: int, js: np.ndarray, w: np.ndarray) -> None:
        """Add neighbours ``js`` (distinct) with weights ``w`` to row ``i``."""
        n = int(self.fill[i])
        ids, ws = self.nid[i], self.nw[i]  # views
        hit = ids[:n][None, :] == js[:, None]
        found = hit.any(axis=1)
        if found.any():
            ws[hit[found].argmax(axis=1)] += w[found]
            js, w = js[~found], w[~found]
        m = len(js)
        if not m:
            return
        take = min(m, self.width - n)
        ids[n:n + take], ws[n:n + take] = js[:take], w[:take]
        self.fill[i] = n + take
        rest = m - take
        if rest:  # full: the remaining newcomers take the lightest slots of the old entries
            k = np.arange(n) if rest >= n else np.argpartition(ws[:n], rest - 1)[:rest]
            ids[k], ws[k] = js[take:take + len(k)], w[take:take + len(k)]

    def update(self, item: int, recent: list[int], weight: float, ts: int) -> None:
        """Fold one interaction with ``item`` by a user whose recent items (before it, most recent
        first; -1 for unknown) are ``recent``."""
        if item < 0 or weight <= 0:
            return
        s = weight * self._scale(ts)
        agg: dict[int, float] = {}  # recent item -> its summed weight (an item may recur)
        d = 0
        for h in recent:
            if h == item:
                continue
            d += 1
            if d > self.window:
                break
            if h >= 0:
                agg[h] = agg.get(h, 0.0) + s / d
        top = max(item, max(agg, default=-1))
        if top >= self.n:
            self._grow(top)
        self.pop[item] += s
        self.updates += 1
        if not agg:
            return
        rows = np.fromiter(agg, dtype=np.int64, count=len(agg))
        w = np.fromiter(agg.values(), dtype=np.float64, count=len(agg)).astype(np.float32)
        self._add_to_rows(rows, item, w)
        if self.backward:
            self._add_to_row(item, rows.astype(np.int32), w * np.float32(self.backward))

    def update_many(self, events: list[tuple[int, list[int], float, int]]) -> None:
        """Fold several interactions ``(item, recent, weight, ts)`` at once, in a fixed number of
        vectorised operations over all their pairs: the result of :meth:`update` one by one,
        except that a full row's newcomers of the batch take that many of its lightest entries
        from before the batch (the heaviest newcomers first; they do not evict each other)."""
        if self.half_life_ms and self.t_ref is not None and events and \
                (max(e[3] for e in events) - self.t_ref) / self.half_life_ms > 60:
            for e in events:  # a rebase due inside the batch: one by one
                self.update(*e)
            return
        items, scale, flat, lengths = [], [], [], []
        for item, recent, weight, ts in events:
            if item < 0 or weight <= 0:
                continue
            items.append(item)
            scale.append(weight * self._scale(ts))
            recent = recent[:self.window + 1]  # the window, and one more in case the item is among them
            flat.extend(recent)
            lengths.append(len(recent))
        if not items:
            return
        item_a, s = np.array(items, dtype=np.int64), np.array(scale)
        h = np.array(flat, dtype=np.int64)
        top = max(int(item_a.max()), int(h.max()) if len(h) else -1)
        if top >= self.n:
            self._grow(top)
        self.updates += len(items)
        np.add.at(self.pop, item_a, s)
        if not len(h):
            return
        # per pair: its event, and the position d of h among the event's recent items other than the item
        lens = np.array(lengths, dtype=np.int64)
        ev = np.repeat(np.arange(len(items)), lens)
        other = h != item_a[ev]
        ends = np.cumsum(other)
        nz = lens > 0
        first = (np.cumsum(lens) - lens)[nz]  # each non-empty event's first pair
        d = ends - np.repeat(ends[first] - other[first], lens[nz])
        ok = other & (d <= self.window) & (h >= 0)
        h, ev, d = h[ok], ev[ok], d[ok]
        x = s[ev] / d
        j = item_a[ev]
        if self.backward:
            self._add_pairs(np.concatenate([h, j]), np.concatenate([j, h]), np.concatenate([x, self.backward * x]))
        else:
            self._add_pairs(h, j, x)

    def _add_pairs(self, rows: np.ndarray, cols: np.ndarray, w: np.ndarray) -> None:
        """Add weight ``w[k]`` to neighbour ``cols[k]`` of row ``rows[k]`` (pairs may repeat)."""
        n = self.n
        keys, inv = np.unique(rows * n + cols, return_inverse=True)
        w = np.bincount(inv, weights=w).astype(np.float32)
        rows, cols = keys // n, (keys % n).astype(np.int32)
        hit = self.nid[rows] == cols[:, None]
        found = hit.any(axis=1)
        if found.any():
            self.nw[rows[found], hit[found].argmax(axis=1)] += w[found]
            new = ~found
            rows, cols, w = rows[new], cols[new], w[new]
        if not len(rows):
            return
        order = np.lexsort((-w, rows))  # by row, the heaviest newcomer first
        rows, cols, w = rows[order], cols[order], w[order]
        starts = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]])
        counts = np.diff(np.r_[starts, len(rows)])
        rank = np.arange(len(rows)) - np.repeat(starts, counts)
        before = self.fill[rows]
        slot = before + rank
        room = slot < self.width
        self.nid[rows[room], slot[room]] = cols[room]
        self.nw[rows[room], slot[room]] = w[room]
        first = rows[starts]
        self.fill[first] = np.minimum(self.fill[first] + counts, self.width)
        if room.all():
            return
        # a full row: its remaining newcomers take its lightest entries from before the batch
        o = ~room
        rows, cols, w, k, before = rows[o], cols[o], w[o], slot[o] - self.width, before[o]
        keep = k < before  # more newcomers than old entries: the lightest newcomers stay out
        rows, cols, w, k, before = rows[keep], cols[keep], w[keep], k[keep], before[keep]
        if not len(rows):
            return
        uniq, g = np.unique(rows, return_inverse=True)
        held = np.zeros(len(uniq), dtype=np.int64)
        held[g] = before  # entries each row held before the batch (this batch's newcomers follow them)
        old = self.nw[uniq].copy()
        old[np.arange(self.width)[None, :] >= held[:, None]] = np.inf
        pos = np.argmin(old, axis=1)[g]  # one newcomer per row (the common case): its lightest entry
        several = np.bincount(g)[g] > 1
        if several.any():  # rows with several: the kk + 1 lightest of each, in order
            multi, gm = np.unique(g[several], return_inverse=True)
            kk = int(k[several].max())
            sub = old[multi]
            part = np.argpartition(sub, kk, axis=1)[:, :kk + 1]
            lightest = np.take_along_axis(part, np.argsort(np.take_along_axis(sub, part, 1), axis=1, kind="stable"), 1)
            pos[several] = lightest[gm, k[several]]
        self.nid[rows, pos] = cols
        self.nw[rows, pos] = w

    def merge(self, other: "ItemRelations") -> None:
        """Add another worker's relations (same item ids) into these, brought to this reference time."""
        f = 1.0
        if self.half_life_ms and other.t_ref is not None:
            if self.t_ref is None:
                self.t_ref = other.t_ref
            f = 2.0 ** ((other.t_ref - self.t_ref) / self.half_life_ms)
        n = other.n
        if n:
            self._grow(n - 1)
        self.pop[:n] += other.pop[:n] * f
        for i in range(n):
            k = int(other.fill[i])
            if k:
                self._add_to_row(i, other.nid[i, :k].copy(), other.nw[i, :k] * np.float32(f))
        self.updates += other.updates

    # -- reading -------------------------------------------------------------------------------
    def neighbours(self, item: int) -> dict[int, float]:
        """The stored neighbours of ``item`` with their weights (as of ``t_ref``)."""
        if item < 0 or item >= self.n:
            return {}
        k = int(self.fill[item])
        return dict(zip(self.nid[item, :k].tolist(), self.nw[item, :k].tolist()))

    def scores(self, recent: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Neighbours of the user's recent items: ``(item indices (sorted), weight, links)``.

        ``weight`` sums ``w(h, j) / d`` over the recent items ``h`` (``d`` their position),
        ``links`` counts the recent items that name ``j``. Vectorised: one gather of the rows,
        then two ``bincount`` over the catalogue when it is small, else one ``unique`` and two
        ``bincount`` over the at most ``window * width`` entries."""
        rec = np.asarray(recent[:self.window], dtype=np.int64)
        d = np.arange(1, len(rec) + 1, dtype=np.float32)
        ok = (rec >= 0) & (rec < self.n)
        if not ok.any():
            return _NO_ROWS, np.zeros(0), np.zeros(0)
        rec, d = rec[ok], d[ok]
        ids = self.nid[rec]
        used = ids >= 0
        if not used.any():
            return _NO_ROWS, np.zeros(0), np.zeros(0)
        ws = (self.nw[rec] / d[:, None])[used].astype(np.float64)
        ids = ids[used]
        if self.n <= 8 * len(ids):  # a small catalogue: dense counts beat sorting the entries
            links = np.bincount(ids, minlength=self.n)
            uniq = np.flatnonzero(links)
            return uniq, np.bincount(ids, weights=ws, minlength=self.n)[uniq], links[uniq].astype(np.float64)
        uniq, inv = np.unique(ids, return_inverse=True)
        return uniq.astype(np.int64), np.bincount(inv, weights=ws), np.bincount(inv).astype(np.float64)

    def popularity(self, idx: np.ndarray) -> np.ndarray:
        """Decayed popularity of item indices (0 for -1 or unknown), as of ``t_ref``."""
        ok = (idx >= 0) & (idx < self.n)
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
        pop = self.pop[:self.n]
        self._max_pop = float(pop.max()) if len(pop) else 0.0
        best = top_k(pop, 1000)
        self._popular = best[pop[best] > 0]

    def popular(self, n: int) -> np.ndarray:
        """Indices of the ``n`` most popular items (long half-life; refreshed every ``refresh_every`` updates)."""
        self._refresh()
        return self._popular[:n]

    def max_pop(self) -> float:
        self._refresh()
        return self._max_pop

    def row_fill(self) -> np.ndarray:
        """Neighbours held per item (rows in use)."""
        return self.fill[:self.n]

    def nbytes(self) -> int:
        """Bytes held by the rows, their fill counts and the popularity array, as allocated."""
        return self.nid.nbytes + self.nw.nbytes + self.fill.nbytes + self.pop.nbytes

    def __len__(self) -> int:
        return self.n
