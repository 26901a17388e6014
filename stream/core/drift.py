"""drift: fixed-size window summaries and the statistics that compare them with a reference.

Summaries follow river's style (``update`` / ``merge`` / ``get``) and never keep events:
a numeric quantity is counted in bins fixed from the reference, a categorical one in a
capped dictionary (the rest folds into ``__other__``). Partial summaries from several
workers merge by adding counts, so the statistic does not depend on how partitions are
spread. Statistics work on the two count vectors:

- ``psi``: population stability index, sum (p - q) * ln(p / q) with a floor for empty bins;
- ``js_distance``: Jensen-Shannon distance (base 2, in [0, 1]), as scipy's ``jensenshannon``;
- ``ks``: Kolmogorov-Smirnov statistic on the binned distributions (max CDF gap);
- ``chi2``: chi-squared test of homogeneity of the 2 x k table (statistic, p-value).

>>> ref, cur = NumericSummary([0, 1, 2, 3]), NumericSummary([0, 1, 2, 3])
>>> for x in [0.5, 1.5, 2.5, 0.5]: ref.update(x)
>>> for x in [2.5, 2.5, 2.5, 1.5]: cur.update(x)
>>> round(ks(ref.counts, cur.counts), 2), round(js_distance(ref.counts, cur.counts), 3)
(0.5, 0.587)
"""

from __future__ import annotations

import math
from bisect import bisect_right
from dataclasses import dataclass, field

import numpy as np

OTHER = "__other__"


class NumericSummary:
    """Counts of a numeric quantity in bins with fixed inner edges (plus two open ends)."""

    def __init__(self, edges: list[float]) -> None:
        self.edges = list(edges)
        self.counts = [0] * (len(self.edges) + 1)
        self.missing = 0
        self.n = 0

    @classmethod
    def from_reference(cls, values: list[float], bins: int = 10) -> "NumericSummary":
        """Inner edges at the reference's quantiles (equal-mass bins), deduplicated."""
        qs = np.quantile(np.asarray(values, dtype=float), np.linspace(0, 1, bins + 1)[1:-1])
        return cls(sorted(set(float(q) for q in qs)))

    def update(self, x: float | None) -> None:
        if x is None or (isinstance(x, float) and math.isnan(x)):
            self.missing += 1
            return
        self.counts[bisect_right(self.edges, x)] += 1
        self.n += 1

    def merge(self, other: "NumericSummary") -> "NumericSummary":
        if other.edges != self.edges:
            raise ValueError("cannot merge summaries with different bins")
        self.counts = [a + b for a, b in zip(self.counts, other.counts)]
        self.missing += other.missing
        self.n += other.n
        return self

    def fresh(self) -> "NumericSummary":
        return NumericSummary(self.edges)


class CategoricalSummary:
    """Counts per category, at most ``max_categories`` named; the rest in ``__other__``."""

    def __init__(self, max_categories: int = 50) -> None:
        self.max_categories = max_categories
        self.counts: dict[str, int] = {}
        self.missing = 0
        self.n = 0

    def update(self, value: str | None) -> None:
        if value is None or value == "":
            self.missing += 1
            return
        key = value if value in self.counts or len(self.counts) < self.max_categories else OTHER
        self.counts[key] = self.counts.get(key, 0) + 1
        self.n += 1

    def merge(self, other: "CategoricalSummary") -> "CategoricalSummary":
        for k, v in other.counts.items():
            self.counts[k] = self.counts.get(k, 0) + v
        self.missing += other.missing
        self.n += other.n
        return self

    def aligned(self, other: "CategoricalSummary") -> tuple[list[int], list[int]]:
        keys = sorted(set(self.counts) | set(other.counts))
        return [self.counts.get(k, 0) for k in keys], [other.counts.get(k, 0) for k in keys]

    def fresh(self) -> "CategoricalSummary":
        return CategoricalSummary(self.max_categories)


def _probs(counts: list[int] | np.ndarray, floor: float = 0.0) -> np.ndarray:
    c = np.asarray(counts, dtype=float)
    total = c.sum()
    p = c / total if total else np.full(len(c), 1.0 / len(c))
    if floor:
        p = np.maximum(p, floor)
        p = p / p.sum()
    return p


def psi(ref: list[int], cur: list[int], floor: float = 1e-4) -> float:
    """Population stability index (0: same; > 0.2 is usually called a shift)."""
    p, q = _probs(ref, floor), _probs(cur, floor)
    return float(np.sum((q - p) * np.log(q / p)))


def js_distance(ref: list[int], cur: list[int]) -> float:
    """Jensen-Shannon distance, base 2 (0: same, 1: disjoint)."""
    p, q = _probs(ref), _probs(cur)
    m = (p + q) / 2

    def kl(a: np.ndarray, b: np.ndarray) -> float:
        mask = a > 0
        return float(np.sum(a[mask] * np.log2(a[mask] / b[mask])))
    return math.sqrt(max(0.0, (kl(p, m) + kl(q, m)) / 2))


def ks(ref: list[int], cur: list[int]) -> float:
    """Kolmogorov-Smirnov statistic of two binned distributions: the largest CDF gap."""
    return float(np.max(np.abs(np.cumsum(_probs(ref)) - np.cumsum(_probs(cur)))))


def chi2(ref: list[int], cur: list[int]) -> tuple[float, float]:
    """Chi-squared test of homogeneity on the 2 x k table (empty columns dropped): (stat, p)."""
    table = np.array([ref, cur], dtype=float)
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2 or (table.sum(axis=1) == 0).any():
        return 0.0, 1.0
    expected = table.sum(axis=1, keepdims=True) * table.sum(axis=0, keepdims=True) / table.sum()
    stat = float(((table - expected) ** 2 / expected).sum())
    dof = table.shape[1] - 1
    return stat, _chi2_sf(stat, dof)


def _chi2_sf(x: float, k: int) -> float:
    """Survival function of the chi-squared distribution (regularised upper gamma)."""
    a, xx = k / 2.0, x / 2.0
    if xx <= 0:
        return 1.0
    if xx < a + 1:  # series for the lower incomplete gamma
        term = total = 1.0 / a
        n = a
        for _ in range(500):
            n += 1
            term *= xx / n
            total += term
            if abs(term) < abs(total) * 1e-15:
                break
        return max(0.0, 1.0 - total * math.exp(-xx + a * math.log(xx) - math.lgamma(a)))
    # continued fraction for the upper incomplete gamma (Lentz)
    b, c, d = xx + 1 - a, 1e300, 1.0 / (xx + 1 - a)
    h = d
    for i in range(1, 500):
        an = -i * (i - a)
        b += 2
        d = an * d + b
        d = 1e-300 if abs(d) < 1e-300 else d
        c = b + an / c
        c = 1e-300 if abs(c) < 1e-300 else c
        d = 1.0 / d
        delta = d * c
        h *= delta
        if abs(delta - 1) < 1e-15:
            break
    return min(1.0, math.exp(-xx + a * math.log(xx) - math.lgamma(a)) * h)


@dataclass
class Hysteresis:
    """An alarm that turns on above ``threshold`` and off only below ``threshold * clear``.

    >>> h = Hysteresis(threshold=0.2, clear=0.5)
    >>> [h.update(v) for v in (0.1, 0.25, 0.15, 0.09, 0.3)]
    [False, True, True, False, True]
    """
    threshold: float
    clear: float = 0.5
    on: bool = False

    def update(self, value: float) -> bool:
        if not self.on and value > self.threshold:
            self.on = True
        elif self.on and value < self.threshold * self.clear:
            self.on = False
        return self.on


@dataclass
class TumblingWindows:
    """Event-time tumbling windows with a grace period; later events are counted, not lost.

    ``assign(ts)`` returns the window start an event belongs to (or None if that window
    has closed: a late event); ``close(watermark)`` returns the starts of windows whose
    end + grace the watermark has passed, oldest first.

    >>> w = TumblingWindows(size_ms=1000, grace_ms=200)
    >>> w.assign(1500), w.assign(2100), w.close(2150), w.close(2250), w.assign(1999)
    (1000, 2000, [], [1000], None)
    >>> w.late
    1
    """
    size_ms: int
    grace_ms: int = 0
    open: set[int] = field(default_factory=set)
    closed_until: int = -(2 ** 62)
    late: int = 0

    def assign(self, ts: int) -> int | None:
        start = ts - ts % self.size_ms
        if start < self.closed_until:
            self.late += 1
            return None
        self.open.add(start)
        return start

    def close(self, watermark: int) -> list[int]:
        done = sorted(s for s in self.open if s + self.size_ms + self.grace_ms <= watermark)
        for s in done:
            self.open.discard(s)
            self.closed_until = max(self.closed_until, s + self.size_ms)
        return done


#: calibrated thresholds never go below these (a statistic that was always 0 on the
#: stationary run, like the length of a full list, must not alarm on its first wobble)
MIN_THRESHOLDS = {"psi": 0.05, "ks": 0.05, "js": 0.05, "rate_change": 0.2, "adwin": 0.5, "page_hinkley": 0.5,
                  "chi2": 0.0}
#: count statistics (detections per window): the threshold is the largest count seen + 0.5
COUNTS = frozenset({"adwin", "page_hinkley"})


def calibrate(values: dict[tuple[str, str, str], list[float]], target_run_windows: float,
              floor: float = 1.05) -> dict[str, dict]:
    """Thresholds from a stationary run, for a target expected run length without false alarm.

    ``values`` maps ``(stage, quantity, statistic)`` to the statistic's values over the
    stationary windows. With ``m`` alerting keys, each gets a per-window false-alarm rate
    ``alpha = 1 / (target_run_windows * m)`` (Bonferroni over keys, the expected-run-time
    idea: one false alarm expected per ``target_run_windows`` windows across all keys).
    The threshold is the ``1 - alpha`` quantile of the upper tail, fitted where false alarms
    come from, not over the bulk: peaks over a threshold ``u`` (the 90th percentile, at least
    5 exceedances), whose excesses ``v - u`` are fitted with an exponential of mean ``beta``
    (the Gumbel domain: light tails, which PSI/KS/JS distances and chi-square statistics have).
    With a share ``p_u`` of values above ``u``, ``P(V > u + x) = p_u exp(-x / beta)``, so the
    threshold is ``u + beta ln(p_u / alpha)`` (the empirical quantile when ``alpha >= p_u``).
    (A log-normal fit of every value, used before, was dominated by many near-zero values and
    put concept-drift thresholds at 9-36x the largest stationary value.) Never below
    ``floor`` times the largest value seen nor below :data:`MIN_THRESHOLDS`. Detector counts
    (ADWIN, Page-Hinkley) get the largest count seen + 0.5. Returns
    ``{"stage/quantity/statistic": {"threshold", "windows", "max", "median", "alpha", "tail_u", "tail_beta"}}``.

    >>> vals = {("input", "price", "psi"): [0.01, 0.012, 0.02, 0.015, 0.011] * 20}
    >>> t = calibrate(vals, target_run_windows=1000)["input/price/psi"]
    >>> t["max"] < t["threshold"] < 0.1, t["windows"]
    (True, 100)
    """
    merged: dict[str, list[float]] = {}
    for (stage, quantity, statistic), vs in values.items():  # variants share one threshold
        merged.setdefault(f"{stage}/{quantity.split('[', 1)[0]}/{statistic}", []).extend(vs)
    alpha = 1.0 / (target_run_windows * max(1, len(merged)))
    out = {}
    for key, vs in sorted(merged.items()):
        top = float(max(vs)) if vs else 0.0
        statistic = key.rsplit("/", 1)[1]
        u = beta = 0.0
        if statistic in COUNTS:
            fitted = top + 0.5
        elif len(vs) >= 3:  # few values: the fit starts lower and extrapolates further (their max
            # alone put the threshold at about the 1 - 1/n quantile: the demo's 10 windows alarmed)
            fitted, u, beta = upper_tail_quantile(np.asarray(vs, dtype=float), alpha)
        else:
            fitted = top
        out[key] = {
            "threshold": max(fitted, top * floor, MIN_THRESHOLDS.get(statistic, 0.0)), "windows": len(vs), "max": top,
            "median": float(np.median(vs)) if vs else 0.0, "alpha": alpha, "tail_u": u, "tail_beta": beta}
    return out


def upper_tail_quantile(values: np.ndarray, alpha: float, tail_share: float = 0.1,
                        min_exceedances: int = 5) -> tuple[float, float, float]:
    """``(q, u, beta)``: the ``1 - alpha`` quantile of ``values`` from an exponential fit of the
    excesses over ``u`` (peaks over threshold); ``beta`` is their mean.

    >>> rng = np.random.default_rng(0)
    >>> q, u, beta = upper_tail_quantile(rng.exponential(1.0, 20_000), alpha=1e-3)
    >>> round(q, 1), round(beta, 1)  # exact: ln(1000) = 6.9
    (6.9, 1.0)
    """
    v = np.sort(values)
    n = len(v)
    k = max(min_exceedances, int(np.ceil(tail_share * n)))  # the exceedances kept
    k = min(k, n - 1)
    u = float(v[n - k - 1])
    excess = v[n - k:] - u
    beta = float(excess.mean())
    p_u = k / n
    if alpha >= p_u or beta <= 0:
        return float(np.quantile(v, 1 - alpha)), u, beta
    return u + beta * float(np.log(p_u / alpha)), u, beta
