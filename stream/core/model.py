"""The scoring model: river logistic regression on profile x item features, scored in numpy.

Learning uses river (``learn_one`` on a feature dict). Serving exports the weights to a
dense vector once per model release and scores a whole candidate set with one matrix
product, giving the same probabilities as river's ``predict_proba_one`` (a unit test
checks this) at a fraction of the cost.

Features of a (user, item) pair: the candidate's dense features (co-visitation, popularity,
trend, ...; see :mod:`stream.core.recommend`) and, where events carry categories:

==============  ============================================================
aff_share       the user's decayed affinity for the item's category / total
aff_top         1 if the item's category is the user's strongest
activity        log1p(events the user made) / 10
cat=<c>         1 for the item's category (a learned base rate per category)
==============  ============================================================

>>> from river import linear_model
>>> m = linear_model.LogisticRegression()
>>> m.learn_one({"aff_share": 1.0, "cat=c1": 1.0, "cov_norm": 0.5}, True)
>>> s = export(m, version=1)
>>> X = s.matrix([{"aff_share": 1.0, "cat=c1": 1.0, "cov_norm": 0.5}])
>>> abs(float(s.scores(X)[0]) - m.predict_proba_one({"aff_share": 1.0, "cat=c1": 1.0, "cov_norm": 0.5})[True]) < 1e-12
True
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

#: the dense, item-specific features (recommend.candidates computes them for every candidate)
DENSE_FEATURES = ("cov", "cov_norm", "links", "has_cov", "pop", "trend", "seen")
BASE_FEATURES = ("aff_share", "aff_top", "activity") + DENSE_FEATURES
#: the starting point of a new model: the retrieval order (co-visitation, then popularity), so a
#: fresh model serves sensible lists before it has seen a click
PRIOR = {"cov_norm": 1.0, "has_cov": 1.0, "pop": 0.05}
PRIOR_BIAS = -3.0


def user_features(profile: dict) -> dict[str, float]:
    """User-level inputs carried in the Recommendation (what the model saw about the user)."""
    aff = profile["affinity"]
    total = sum(aff.values())
    feats = {"activity": math.log1p(profile["version"]) / 10}
    if total > 0:
        for cat, v in aff.items():
            feats["aff:" + cat] = v / total
        feats["top:" + max(aff, key=aff.__getitem__)] = 1.0
    return feats


def pair_features(user: dict[str, float], category: str | None, dense: dict[str, float]) -> dict[str, float]:
    """The model's input for one (user, item) pair (the slow path, also used for learning)."""
    x = {"activity": user.get("activity", 0.0), **dense}
    if category:
        x["aff_share"] = user.get("aff:" + category, 0.0)
        x["aff_top"] = user.get("top:" + category, 0.0)
        x["cat=" + category] = 1.0
    else:
        x["aff_share"] = x["aff_top"] = 0.0
    return x


@dataclass
class Scorer:
    """A frozen numpy export of a linear model: ``scores(X) = sigmoid(X @ w + b)``."""
    version: int
    names: list[str]
    weights: np.ndarray
    bias: float
    index: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.index = {n: i for i, n in enumerate(self.names)}

    def matrix(self, rows: list[dict[str, float]]) -> np.ndarray:
        """Dense X from feature dicts (features the model never learned are dropped: weight 0)."""
        X = np.zeros((len(rows), len(self.names)))
        for r, x in enumerate(rows):
            for k, v in x.items():
                j = self.index.get(k)
                if j is not None:
                    X[r, j] = v
        return X

    def score_items(self, user: dict[str, float], cat_idx: np.ndarray, category_names: list[str],
                    dense: dict[str, np.ndarray]) -> np.ndarray:
        """Scores of many items of one user without building X (the serving path).

        For a linear model ``z = b + w.x``: the per-category terms (affinity share, top
        category, category weight) are looked up by each item's category index, so the
        cost is a few vector operations whatever the number of categories.
        """
        n_cat = len(category_names)
        w, idx = self.weights, self.index
        # per-category terms, with a last slot of zeros for items without a category
        per_cat = np.zeros(n_cat + 1)
        w_aff, w_top = w[idx["aff_share"]], w[idx["aff_top"]]
        for c, name in enumerate(category_names):
            j = idx.get("cat=" + name)
            per_cat[c] = (w_aff * user.get("aff:" + name, 0.0) + w_top * user.get("top:" + name, 0.0)
                          + (w[j] if j is not None else 0.0))
        z = (self.bias + w[idx["activity"]] * user.get("activity", 0.0)) + per_cat[cat_idx]  # -1: the zero slot
        for name, col in dense.items():
            j = idx.get(name)
            if j is not None and w[j]:
                z = z + w[j] * col
        return self._sigmoid(z)

    def scores(self, X: np.ndarray) -> np.ndarray:
        return self._sigmoid(X @ self.weights + self.bias)

    @staticmethod
    def _sigmoid(z: np.ndarray) -> np.ndarray:
        # river's sigmoid: exactly 0 below -30 and 1 above 30
        return np.where(z < -30, 0.0, np.where(z > 30, 1.0, 1.0 / (1.0 + np.exp(-np.clip(z, -30, 30)))))


def export(model, version: int) -> Scorer:
    """A :class:`Scorer` from a river LogisticRegression (the base features always present)."""
    weights = dict(model.weights)
    names = list(BASE_FEATURES) + sorted(k for k in weights if k not in BASE_FEATURES)
    return Scorer(version, names, np.array([weights.get(n, 0.0) for n in names], dtype=float),
                  float(model.intercept))


def new_model(lr: float = 0.05, l2: float = 0.0, prior: bool = True):
    """A river logistic regression, starting from :data:`PRIOR` (the retrieval order) unless told not to."""
    from river import linear_model, optim
    m = linear_model.LogisticRegression(optimizer=optim.SGD(lr), l2=l2)
    if prior:
        for name, w in PRIOR.items():
            m._weights[name] = w
        m.intercept = PRIOR_BIAS
    return m
