"""Small fixed-size statistics in river's style: ``update()``, ``get()``, ``merge()``.

:class:`LogHistogram` keeps counts in log-spaced buckets (16 per decade), so a quantile
is known to within one bucket (about 15% relative) in constant memory, and two
histograms merge by adding counts.

>>> h = LogHistogram()
>>> for v in range(1, 1001):
...     h.update(v / 1000)
>>> 0.45 < h.quantile(0.5) < 0.56, 0.93 < h.quantile(0.99) < 1.1
(True, True)
>>> h.count
1000
"""

from __future__ import annotations

import math
from bisect import bisect_left


class LogHistogram:
    """Counts in log-spaced buckets between ``lo`` and ``hi`` (values outside are clamped)."""

    __slots__ = ("lo", "hi", "per_decade", "bounds", "counts", "count", "total")

    def __init__(self, lo: float = 1e-6, hi: float = 1e4, per_decade: int = 16) -> None:
        self.lo, self.hi, self.per_decade = lo, hi, per_decade
        n = int(round(math.log10(hi / lo) * per_decade))
        self.bounds = [lo * 10 ** (i / per_decade) for i in range(n + 1)]
        self.counts = [0] * (n + 2)  # [<lo] + n buckets + [>=hi]
        self.count = 0
        self.total = 0.0

    def update(self, value: float, n: int = 1) -> None:
        self.counts[bisect_left(self.bounds, value)] += n
        self.count += n
        self.total += value * n

    def merge(self, other: "LogHistogram") -> "LogHistogram":
        if other.bounds != self.bounds:
            raise ValueError("cannot merge histograms with different buckets")
        self.counts = [a + b for a, b in zip(self.counts, other.counts)]
        self.count += other.count
        self.total += other.total
        return self

    def quantile(self, q: float) -> float:
        """Estimated ``q``-quantile (interpolated inside its bucket); 0.0 when empty."""
        if not self.count:
            return 0.0
        rank = q * self.count
        seen = 0
        for i, c in enumerate(self.counts):
            if c and seen + c >= rank:
                if i == 0:
                    return self.lo
                if i >= len(self.bounds):
                    return self.hi
                lower, upper = self.bounds[i - 1], self.bounds[i]
                return lower + (upper - lower) * (rank - seen) / c
            seen += c
        return self.hi

    def get(self) -> dict[str, float]:
        return {"p50": self.quantile(0.5), "p95": self.quantile(0.95), "p99": self.quantile(0.99),
                "mean": self.total / self.count if self.count else 0.0}

    def copy(self) -> "LogHistogram":
        h = LogHistogram(self.lo, self.hi, self.per_decade)
        h.counts, h.count, h.total = list(self.counts), self.count, self.total
        return h

    def reset(self) -> None:
        self.counts = [0] * len(self.counts)
        self.count = 0
        self.total = 0.0

    def buckets(self) -> list[tuple[float, int]]:
        """Cumulative ``(upper_bound, count)`` pairs, Prometheus-style (last bound is +Inf)."""
        out, cum = [], 0
        for i, c in enumerate(self.counts):
            cum += c
            bound = self.bounds[i] if i < len(self.bounds) else math.inf
            out.append((bound, cum))
        return out
