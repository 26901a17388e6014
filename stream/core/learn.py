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

    def __init__(self, model, model_name: str, version: int, window: int = 5000) -> None:
        self.model, self.model_name, self.version = model, model_name, version
        self.window = window
        self.examples = 0
        self.frozen = False
        self.variants: dict[str, VariantMetrics] = {}

    def learn(self, x: dict[str, float], y: int, rec_id: str, variant: str, k: int) -> float:
        p = self.model.predict_proba_one(x)[True]
        self.variants.setdefault(variant, VariantMetrics(self.window)).update(p, y, rec_id, k)
        if not self.frozen:
            self.model.learn_one(x, bool(y))
            self.examples += 1
        return p

    def metrics(self, variant: str) -> dict[str, float]:
        vm = self.variants.get(variant)
        return vm.get() if vm else {}
