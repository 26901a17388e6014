"""Statistical tests that judge a challenger against the champion, one window at a time.

- :func:`two_proportion_test`: CTR of what each variant served (one-sided, optional margin);
- :func:`mann_whitney`: ranks of two independent loss samples;
- :class:`PairedLoss`: both models' losses on the same examples, a paired z-test of the mean.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


def _norm_sf(z: float) -> float:
    return 0.5 * math.erfc(z / math.sqrt(2.0))


def two_proportion_test(x1: int, n1: int, x2: int, n2: int, margin: float = 0.0,
                        alternative: str = "worse") -> tuple[float, float]:
    """Z-test of the challenger's rate x2/n2 against the champion's x1/n1: (z, one-sided p).

    ``"worse"``: H1 is p2 < p1 - margin, z = (p2 - p1 + margin) / se, p = P(Z < z);
    ``"better"``: H1 is p2 > p1 + margin, z = (p2 - p1 - margin) / se, p = P(Z > z).
    se is pooled when margin == 0, else unpooled. Degenerate inputs (an empty sample, all 0
    or all 1, zero variance) give (0.0, 1.0).

    >>> [round(v, 4) for v in two_proportion_test(170, 1000, 120, 1000)]
    [-3.1753, 0.0007]
    """
    if alternative not in ("worse", "better"):
        raise ValueError(f"alternative must be 'worse' or 'better', not {alternative!r}")
    if n1 <= 0 or n2 <= 0 or x1 + x2 in (0, n1 + n2):
        return 0.0, 1.0
    p1, p2 = x1 / n1, x2 / n2
    if margin == 0:
        pool = (x1 + x2) / (n1 + n2)
        se = math.sqrt(pool * (1 - pool) * (1 / n1 + 1 / n2))
    else:
        se = math.sqrt(p1 * (1 - p1) / n1 + p2 * (1 - p2) / n2)
    if se == 0:
        return 0.0, 1.0
    sign = -1.0 if alternative == "worse" else 1.0  # worse: P(Z < z); better: P(Z > z)
    z = (p2 - p1 - sign * margin) / se
    return z, _norm_sf(sign * z)


def mann_whitney(a, b, alternative: str = "worse", margin: float = 0.0) -> tuple[float, float]:
    """Mann-Whitney U of ``b`` (challenger) against ``a`` (champion): (U of b, one-sided p).

    ``"worse"``: H1 is that b - margin tends to be larger than a (higher loss), the same as
    ``scipy.stats.mannwhitneyu(b - margin, a, alternative="greater", method="asymptotic")``;
    ``"better"``: H1 is that b + margin tends to be smaller (scipy's ``"less"`` on b + margin).
    Normal approximation, tie and continuity corrections. An empty sample gives (0.0, 1.0),
    all values tied (U, 1.0).

    >>> [round(v, 4) for v in mann_whitney([0.1, 0.2, 0.3, 0.4], [0.35, 0.5, 0.6, 0.7])]
    [15.0, 0.0303]
    """
    if alternative not in ("worse", "better"):
        raise ValueError(f"alternative must be 'worse' or 'better', not {alternative!r}")
    x = np.asarray(b, dtype=float) + (-margin if alternative == "worse" else margin)
    y = np.asarray(a, dtype=float)
    n1, n2 = len(x), len(y)
    if n1 == 0 or n2 == 0:
        return 0.0, 1.0
    _, inverse, counts = np.unique(np.concatenate([x, y]), return_inverse=True, return_counts=True)
    ranks = (np.cumsum(counts) - (counts - 1) / 2.0)[inverse.ravel()]
    u1 = float(ranks[:n1].sum() - n1 * (n1 + 1) / 2)
    n, ties = n1 + n2, float((counts.astype(float) ** 3 - counts).sum())
    var = n1 * n2 / 12 * ((n + 1) - ties / (n * (n - 1)))
    if var <= 0:
        return u1, 1.0
    u = u1 if alternative == "worse" else n1 * n2 - u1
    return u1, _norm_sf((u - n1 * n2 / 2 - 0.5) / math.sqrt(var))


@dataclass
class PairedLoss:
    """Both models' losses on the same examples, kept as sums of the per-example difference
    ``d = challenger loss - champion loss`` (exact, fixed size).

    >>> pl = PairedLoss()
    >>> for champ, chal in [(0.2, 0.3), (0.5, 0.7), (0.1, 0.1), (0.4, 0.6)]: pl.update(champ, chal)
    >>> pl.n, round(pl.mean, 3), [round(v, 3) for v in pl.test("worse")]
    (4, 0.125, [2.611, 0.005])
    """
    n: int = 0
    sum_d: float = 0.0
    sum_d2: float = 0.0

    def update(self, champion_loss: float, challenger_loss: float) -> None:
        d = challenger_loss - champion_loss
        self.n += 1
        self.sum_d += d
        self.sum_d2 += d * d

    @property
    def mean(self) -> float:
        return self.sum_d / self.n if self.n else 0.0

    def test(self, alternative: str = "worse", margin: float = 0.0) -> tuple[float, float]:
        """Paired z-test of the mean difference: (z, one-sided p) for H1 challenger worse
        (mean d > margin) or better (mean d < -margin). Fewer than 2 examples: (0.0, 1.0)."""
        if self.n < 2:
            return 0.0, 1.0
        var = (self.sum_d2 - self.n * self.mean ** 2) / (self.n - 1)
        if var <= 0:
            return 0.0, 1.0
        z = (self.mean - (margin if alternative == "worse" else -margin)) / math.sqrt(var / self.n)
        return z, _norm_sf(z if alternative == "worse" else -z)
