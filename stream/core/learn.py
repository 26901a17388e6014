"""learn: progressive validation (predict, then learn) of the online model, per version and variant.

>>> from stream.core.model import new_model
>>> ln = Learner(new_model(), model_name="reco", version=1)
>>> for i in range(200):
...     _ = ln.learn({"aff_share": float(i % 2), "cat=c1": 1.0}, i % 2, rec_id=f"r{i // 10}", variant="champion", k=10)
>>> round(ln.metrics("champion")["ctr"], 2), ln.examples
(0.5, 200)
>>> ln.metrics("champion")["log_loss"] < 0.69
True
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque

from river import metrics as rmetrics


def variant_weights(m) -> dict[str, float]:  # noqa: ANN001 - stream.config.ModelSettings
    """Sample weights of the served variants' feedback (organic clicks weigh 1)."""
    return {v: m.served_weight for v in ("champion", "challenger", "shadow", "blue")}


def list_size(variant: str, k: int) -> int:
    """How many labelled examples make up one list of ``variant``: ``k`` served items, except an
    organic example, which stands alone (a pick or a sampled negative)."""
    return 1 if variant == "organic" else k


class VariantMetrics:
    """Rolling log loss, ROC AUC and CTR over the last ``window`` examples; hit-rate over recs."""

    def __init__(self, window: int = 5000) -> None:
        self.losses: deque[float] = deque(maxlen=window)
        self.labels: deque[int] = deque(maxlen=window)
        self.rolling_auc = rmetrics.RollingROCAUC(window_size=window)
        self.recs: OrderedDict[str, list[int]] = OrderedDict()  # rec_id -> [labelled, positives]
        self.hits: deque[int] = deque(maxlen=max(100, window // 10))
        self.examples = 0

    def update(self, p: float, y: int, rec_id: str, k: int) -> None:
        p = min(max(p, 1e-15), 1 - 1e-15)
        self.losses.append(-(y * math.log(p) + (1 - y) * math.log(1 - p)))
        self.labels.append(y)
        self.rolling_auc.update(bool(y), p)
        self.examples += 1
        counts = self.recs.setdefault(rec_id, [0, 0])
        counts[0] += 1
        counts[1] += y
        if counts[0] >= k:  # every served item of this rec is labelled
            self.hits.append(1 if counts[1] else 0)
            del self.recs[rec_id]
        while len(self.recs) > 10_000:
            self.recs.popitem(last=False)

    def get(self) -> dict[str, float]:
        n = len(self.losses)
        return {"log_loss": sum(self.losses) / n if n else 0.0,
                "auc": float(self.rolling_auc.get()) if n else 0.0,
                "ctr": sum(self.labels) / n if n else 0.0,
                "hit_rate": sum(self.hits) / len(self.hits) if self.hits else 0.0,
                "examples": float(self.examples)}


class Learner:
    """One online model: predict-then-learn on each labelled example; metrics per variant."""

    def __init__(self, model, model_name: str, version: int, window: int = 5000,
                 weights: dict[str, float] | None = None, average_over: int = 5000) -> None:
        self.model, self.model_name, self.version = model, model_name, version
        #: sample weight per variant (default 1; 0: scored for the metrics, not learned from)
        self.weights = weights or {}
        #: releases serve the average of the weights over about this many examples (0: the latest)
        self.average_over = average_over
        self.avg: dict[str, float] = {}
        self.avg_bias: float | None = None
        self.window = window
        self.examples = 0
        self.frozen = False
        self.variants: dict[str, VariantMetrics] = {}

    def learn(self, x: dict[str, float], y: int, rec_id: str, variant: str, k: int, source: str | None = None) -> float:
        """Predict, then learn; ``variant`` names the metrics, ``source`` (default: ``variant``) the
        feedback's origin, which picks the sample weight (a challenger learns organic examples too)."""
        p = self.model.predict_proba_one(x)[True]
        self.variants.setdefault(variant, VariantMetrics(self.window)).update(p, y, rec_id, k)
        w = self.weights.get(source or variant, 1.0)
        if not self.frozen and w > 0:
            self.model.learn_one(x, bool(y), w=w)
            self.examples += 1
            if self.average_over:
                self._average()
        return p

    def _average(self) -> None:
        """Exponential average of the weights: SGD's iterates swing from example to example, and
        a release snapshots one of them (measured on ML-100k: HR@10 0.138 for the latest weights
        released every 2,000 examples, 0.200 for their average over 5,000)."""
        a = max(1.0 / self.average_over, 1.0 / self.examples)
        avg = self.avg
        for k, v in self.model._weights.items():
            old = avg.get(k)
            avg[k] = v if old is None else old + a * (v - old)
        b = self.model.intercept
        self.avg_bias = b if self.avg_bias is None else self.avg_bias + a * (b - self.avg_bias)

    def serving_model(self):  # noqa: ANN201 - a river model
        """The model a release serves: a copy holding the averaged weights (the model itself without)."""
        if not self.average_over or self.avg_bias is None:
            return self.model
        m = self.model.clone(include_attributes=True)
        for k, v in self.avg.items():
            m._weights[k] = v
        m.intercept = self.avg_bias
        return m

    def metrics(self, variant: str) -> dict[str, float]:
        vm = self.variants.get(variant)
        return vm.get() if vm else {}
