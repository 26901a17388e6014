"""learn: the single learner of a model, fed from feedback.v1 (one partition).

Progressive validation per variant, a release to the registry every N examples or T
seconds (announced on models.v1), freeze/resume/reset switches read from the registry.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable

from stream.adapters.output import Output
from stream.adapters.registry import ModelIntegrityError, ModelRegistry
from stream.config import RolloutSettings
from stream.core.learn import Learner, list_size
from stream.core.model import new_model
from stream.errors import SerdeError
from stream.log import event
from stream.monitor import StageStats
from stream.serde import SchemaRegistry
from stream.stages.rollout import RolloutController

log = logging.getLogger("stream.learn")
#: the model family and feature set: a release of another family is not resumed (its weights
#: belong to other features), the learner starts afresh from the prior
FAMILY = "logreg-retrieval-2"


class LearnLoop:
    def __init__(self, registry: ModelRegistry, serde: SchemaRegistry, out: Output, name: str, lr: float,
                 k: int, release_every: int, release_every_s: float, rollout: RolloutSettings | None = None,
                 weights: dict[str, float] | None = None, average_over: int = 0,
                 history: Callable[[], dict | None] | None = None) -> None:
        self.registry, self.serde, self.out, self.name, self.lr, self.k = registry, serde, out, name, lr, k
        #: the newest release on models.v1, with its blob (None: none there); asked when the
        #: registry has no release, e.g. after Redis restarted empty
        self.history = history
        self.weights, self.average_over = weights or {}, average_over
        self.release_every, self.release_every_s = release_every, release_every_s
        self.stats = StageStats("learn")
        self.learner: Learner | None = None
        self.since_release = 0
        self.last_release = time.monotonic()
        #: the learner thread and the control/alert agents both change learners: one at a time
        self.lock = threading.Lock()
        self.rollout = RolloutController(self, rollout) if rollout is not None else None

    def start(self) -> dict:
        """Continue from the latest release (from models.v1 if the registry lost it), or start
        (and release) a fresh model."""
        latest = self.registry.latest(self.name) or self.restore()
        model, version = new_model(self.lr), 0
        if latest is not None and latest.get("family") != FAMILY:
            event(log, "model_family_changed", model=self.name, version=latest["version"],
                  family=latest.get("family"), now=FAMILY)
            latest = None
        if latest is not None:
            try:
                model, version = self.registry.load(latest), latest["version"]
            except ModelIntegrityError as exc:
                event(log, "model_refused", logging.ERROR, model=self.name, version=latest["version"], error=str(exc))
        self.learner = self.new_learner(model, version)
        self.learner.frozen = self.registry.flag(self.name, "frozen")
        rec = self.release(parent=None) if version == 0 else latest
        if version:
            event(log, "learner_resumed", model=self.name, version=version)
        if self.rollout is not None:
            self.rollout.start(self.learner.version)
        return rec

    def restore(self) -> dict | None:
        """The newest release on models.v1 put back into the registry (None if there is none
        or it is refused)."""
        found = self.history() if self.history is not None else None
        if found is None:
            return None
        try:
            rec = self.registry.restore(found)
        except ModelIntegrityError as exc:
            event(log, "model_refused", logging.ERROR, model=self.name, version=found["version"], error=str(exc))
            return None
        event(log, "registry_restored", logging.WARNING, model=self.name, version=rec["version"],
              examples_seen=rec["examples_seen"], source="models.v1")
        return rec

    def new_learner(self, model, version: int) -> Learner:  # noqa: ANN001 - a river model
        return Learner(model, self.name, version, weights=self.weights, average_over=self.average_over)

    def process(self, raw: bytes) -> None:
        try:
            fb = self.serde.decode("Feedback", raw)
        except SerdeError as exc:
            self.stats.count("rejected")
            event(log, "feedback_undecodable", logging.WARNING, error=str(exc))
            return
        self.stats.count("in")
        k = list_size(fb["variant"], self.k)
        p = self.learner.learn(fb["features"], fb["label"], fb["rec_id"], fb["variant"], k)
        if self.rollout is not None:
            self.rollout.observe(fb, p, k)
        self.since_release += 1
        self.stats.count("out")

    def update_gauges(self) -> None:
        """Progressive-validation metrics of the champion as gauges (monitor.learn.v1 + Prometheus)."""
        g = self.stats.gauges
        g["model_version"] = float(self.learner.version)
        g["model_frozen"] = 1.0 if self.learner.frozen else 0.0
        # the champion model's rolling metrics on each slice of traffic: what the champion
        # served, the canary's share (served by the challenger: the champion scored it too),
        # explored slots, organic examples; a slice that is gone leaves no stale series
        fresh = {f"model_{k}|traffic={variant}": v for variant in self.learner.variants
                 for k, v in self.learner.metrics(variant).items()}
        for key in [k for k in g if k.startswith("model_") and "|traffic=" in k and k not in fresh]:
            del g[key]
        g.update(fresh)

    def maybe_release(self) -> dict | None:
        """Apply the freeze/reset switches; release when enough examples or time have passed."""
        ln = self.learner
        frozen = self.registry.flag(self.name, "frozen")
        if frozen != ln.frozen:
            ln.frozen = frozen
            event(log, "learning_frozen" if frozen else "learning_resumed", model=self.name, version=ln.version)
        if self.registry.flag(self.name, "reset"):
            self.registry.set_flag(self.name, "reset", False)
            self.learner = self.new_learner(new_model(self.lr), ln.version)
            event(log, "model_reset", model=self.name, from_version=ln.version)
            return self.release(parent=None)
        self.update_gauges()
        if self.rollout is not None:
            self.rollout.maybe_judge()
        due = self.since_release >= self.release_every or \
            (self.since_release and time.monotonic() - self.last_release >= self.release_every_s)
        if not due:
            return None
        challenger = self.rollout.learners.get("challenger") if self.rollout is not None else None
        if challenger is not None:  # the scorers serve the challenger's newest snapshot (frozen champion or not)
            rec = self.registry.release(self.name, challenger.serving_model(), family=FAMILY, parent=challenger.version,
                                        examples=challenger.examples, metrics=challenger.metrics("challenger"),
                                        pointer="challenger",
                                        min_version=max(ln.version, challenger.version or 0) + 1)
            challenger.version = rec["version"]
            self.since_release, self.last_release = 0, time.monotonic()
        return None if ln.frozen else self.release(parent=ln.version)

    def release(self, parent: int | None) -> dict:
        ln = self.learner
        metrics = ln.metrics("champion")
        rec = self.registry.release(self.name, ln.serving_model(), family=FAMILY, parent=parent, examples=ln.examples,
                                    metrics=metrics, min_version=ln.version + 1)
        ln.version = rec["version"]
        if self.rollout is not None and self.rollout.state is not None:
            self.rollout.state.champion = rec["version"]  # the champion's newest snapshot
            self.rollout.save()
        announced = {**rec, "blob": self.registry.blob(rec)}  # with the blob: the registry can be restored
        self.out.produce("models.v1", self.serde.encode("ModelRelease", announced), key=self.name.encode())
        self.since_release, self.last_release = 0, time.monotonic()
        self.stats.outputs.update({f"{k}": v for k, v in metrics.items()})
        self.stats.add_output("releases")
        event(log, "model_released", model=self.name, version=rec["version"], parent=parent,
              examples_seen=ln.examples, **{f"metric_{k}": round(v, 4) for k, v in metrics.items()})
        return rec
