"""The prequential protocol of ``stream replay`` and the field's simple baselines on it.

Walk the log in time order; for each positive interaction whose user has at least one
earlier interaction, ask for the user's top-k *before* the interaction is folded in; it is
a hit if the item is in the list (an item never seen before cannot be hit); then fold it.

>>> from stream.replay.log import from_text
>>> rows = from_text("user,item,timestamp\\n1,a,1\\n2,a,2\\n2,b,3\\n1,b,4\\n3,a,5\\n3,b,6\\n")
>>> [r.item for r in requests(rows, None)]
['b', 'b', 'b']
>>> run_baseline(rows, None, PopularityBaseline(rows)).summary()["hits"]  # b was new when user 2 took it
2
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict, deque
from typing import Iterable, Protocol

import numpy as np

from stream.core.catalog import top_k
from stream.replay.log import Interaction


def requests(rows: Iterable[Interaction], min_rating: float | None) -> list[Interaction]:
    """The interactions that are evaluated: positives of users seen before."""
    seen: set[str] = set()
    out = []
    for r in rows:
        if r.user in seen and r.positive(min_rating):
            out.append(r)
        seen.add(r.user)
    return out


class Prequential:
    """HR@k, NDCG@k, MRR@k, coverage and per-period figures of a stream of (target, list)."""

    def __init__(self, k: int = 10, t_min: int = 0, t_max: int = 1, periods: int = 10, catalogue: int = 0) -> None:
        self.k, self.t_min, self.span, self.n_periods = k, t_min, max(1, t_max - t_min), periods
        self.catalogue = catalogue
        self.n = self.hits = 0
        self.ndcg = self.rr = 0.0
        self.recall_trials = self.recall_hits = 0
        self.shown: set[str] = set()
        self.periods = [[0, 0, 0.0] for _ in range(periods)]  # n, hits, ndcg

    def period_of(self, ts: int) -> int:
        return min(self.n_periods - 1, max(0, (ts - self.t_min) * self.n_periods // self.span))

    def add(self, target: str, ranked: list[str], ts: int, in_candidates: bool | None = None) -> None:
        ranked = ranked[:self.k]
        self.n += 1
        self.shown.update(ranked)
        p = self.periods[self.period_of(ts)]
        p[0] += 1
        if in_candidates is not None:
            self.recall_trials += 1
            self.recall_hits += bool(in_candidates)
        if target in ranked:
            rank = ranked.index(target)
            gain = 1.0 / math.log2(rank + 2)
            self.hits += 1
            self.ndcg += gain
            self.rr += 1.0 / (rank + 1)
            p[1] += 1
            p[2] += gain

    def summary(self) -> dict:
        n = max(1, self.n)
        out = {"hr10": self.hits / n, "ndcg10": self.ndcg / n, "mrr": self.rr / n, "n_eval": self.n,
               "hits": self.hits,
               "candidate_recall": self.recall_hits / self.recall_trials if self.recall_trials else None,
               "coverage": len(self.shown) / self.catalogue if self.catalogue else None}
        out["periods"] = [{"period": i, "start_ms": self.t_min + i * self.span // self.n_periods,
                           "end_ms": self.t_min + (i + 1) * self.span // self.n_periods, "n_eval": p[0],
                           "hr10": p[1] / p[0] if p[0] else None, "ndcg10": p[2] / p[0] if p[0] else None}
                          for i, p in enumerate(self.periods)]
        return out


class Baseline(Protocol):
    name: str

    def recommend(self, user: str, k: int) -> list[str]: ...

    def observe(self, r: Interaction, positive: bool) -> None: ...


class _Items:
    """Items of the log as indices, each user's consumed items, popularity counts so far."""

    def __init__(self, rows: list[Interaction]) -> None:
        self.index: dict[str, int] = {}
        for r in rows:
            self.index.setdefault(r.item, len(self.index))
        self.items = list(self.index)
        self.count = np.zeros(len(self.items))
        self.consumed: defaultdict[str, list[int]] = defaultdict(list)
        self._mine: dict[str, set[int]] = defaultdict(set)

    def observe(self, r: Interaction) -> int:
        i = self.index[r.item]
        self.count[i] += 1
        if i not in self._mine[r.user]:
            self._mine[r.user].add(i)
            self.consumed[r.user].append(i)
        return i

    def top(self, scores: np.ndarray, user: str, k: int) -> list[str]:
        s = scores.copy()
        mine = self.consumed.get(user)
        if mine:
            s[mine] = -np.inf
        s[self.count == 0] = -np.inf  # never seen: cannot be recommended
        best = top_k(s, k)
        return [self.items[j] for j in best if s[j] > -np.inf]


class PopularityBaseline:
    """Global popularity (interaction counts so far), items the user consumed left out."""
    name = "popularity"

    def __init__(self, rows: list[Interaction]) -> None:
        self.items = _Items(rows)

    def recommend(self, user: str, k: int) -> list[str]:
        return self.items.top(self.items.count, user, k)

    def observe(self, r: Interaction, positive: bool) -> None:
        self.items.observe(r)


class CooccurrenceBaseline:
    """Item co-occurrence: neighbours of the user's last ``history`` positives, co-occurrence
    counts / popularity^``power``, consumed items left out, popularity breaking ties (and
    filling the list when the history names too few). Exact counts in a dense matrix."""
    name = "cooccurrence"
    MAX_ITEMS = 12_000  # a dense float32 matrix of 576 MB

    def __init__(self, rows: list[Interaction], history: int = 20, power: float = 0.5) -> None:
        self.items = _Items(rows)
        n = len(self.items.items)
        if n > self.MAX_ITEMS:
            raise ValueError(f"the co-occurrence baseline keeps a dense matrix: {n} items is more than "
                             f"{self.MAX_ITEMS} (use --limit, or --no-baselines)")
        self.history, self.power = history, power
        self.co = np.zeros((n, n), dtype=np.float32)
        self.recent: defaultdict[str, deque[int]] = defaultdict(lambda: deque(maxlen=self.history))

    def recommend(self, user: str, k: int) -> list[str]:
        hist = self.recent.get(user)
        count = self.items.count
        tie = count / (count.max() + 1.0) * 1e-6
        if not hist:
            return self.items.top(count, user, k)
        s = self.co[list(hist)].sum(axis=0, dtype=np.float64) / np.maximum(count, 1.0) ** self.power
        return self.items.top(s + tie, user, k)

    def observe(self, r: Interaction, positive: bool) -> None:
        i = self.items.observe(r)
        if positive:
            hist = self.recent[r.user]
            others = [h for h in hist if h != i]
            if others:
                self.co[others, i] += 1
                self.co[i, others] += 1
            if i in hist:
                hist.remove(i)
            hist.append(i)


def run_baseline(rows: list[Interaction], min_rating: float | None, policy: Baseline, k: int = 10,
                 periods: int = 10) -> Prequential:
    ev = Prequential(k, rows[0].ts_ms, rows[-1].ts_ms, periods, catalogue=len({r.item for r in rows}))
    seen: set[str] = set()
    for r in rows:
        positive = r.positive(min_rating)
        if positive and r.user in seen:
            ev.add(r.item, policy.recommend(r.user, k), r.ts_ms)
        seen.add(r.user)
        policy.observe(r, positive)
    return ev
