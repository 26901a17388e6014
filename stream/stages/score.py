"""feedback and score handlers, fused after profile on clicks.v1.

feedback: every event is matched against the user's open recommendations (positives at
once); a timer closes windows that event time has passed (negatives). score: every
event updates the catalog; an event whose type asks for recommendations gets the top-k
from the current model, emitted to recommendations.v1 and opened in the join.
"""

from __future__ import annotations

import time
import uuid
from typing import Callable

from stream.adapters.output import Output
from stream.core.catalog import Catalog
from stream.core.feedback import FeedbackJoin
from stream.core.model import Scorer
from stream.core.profile import Position
from stream.core.recommend import RecommendConfig, item_features, recommend
from stream.core.rollout import RolloutState, serves_challenger
from stream.monitor import StageStats
from stream.runner import RawMessage
from stream.serde import SchemaRegistry
from stream.users import UserStates


class ModelSlot:
    """The scorer currently serving; swapped whole when a new release is loaded."""

    def __init__(self, name: str, scorer: Scorer) -> None:
        self.name, self.scorer = name, scorer


class Routing:
    """Which variant serves a user: the rollout state (followed from the registry) and the
    challenger's slot. In a canary the challenger serves the users whose keyed hash falls
    under its share; in shadow it scores every request but its lists only go to the shadow topic."""

    def __init__(self) -> None:
        self.state: RolloutState | None = None
        self.challenger: ModelSlot | None = None

    @property
    def salt(self) -> str:
        return f"{self.state.model}:{self.state.challenger}"

    def pick(self, user_id: str) -> str:
        st = self.state
        if st is None or self.challenger is None or st.mode == "idle":
            return "champion"
        if st.mode == "shadow":
            return "shadow"
        return "challenger" if serves_challenger(user_id, st.share, self.salt) else "champion"


class FeedbackStage:
    def __init__(self, join: FeedbackJoin, out: Output, registry: SchemaRegistry, topic: str = "feedback.v1",
                 clock: Callable[[], float] = time.time) -> None:
        self.join, self.out, self.registry, self.topic, self.clock = join, out, registry, topic, clock
        self.stats = StageStats("feedback")
        self.watermark = 0  # highest event time seen (ms)

    def handle(self, ev: dict, pos: Position, msg: RawMessage) -> dict | None:
        self.stats.count("in")
        ts = ev["timestamp"]
        if ts > self.watermark:
            self.watermark = ts
        before = self.join.counts["duplicate_click"]
        if self.join.on_event(ev["user_id"], ev.get("item_id"), ev["event_type"], ts, ev.get("rec_id")):
            self.stats.add_output("clicks_attributed")
        self.stats.count("duplicate", self.join.counts["duplicate_click"] - before)
        self.stats.outputs["late_clicks"] = float(self.join.counts["late_click"])
        return ev

    def close_windows(self, grace_ms: int = 0) -> int:
        """Negatives for every recommendation whose window event time has passed."""
        labelled = self.join.expire(self.watermark - grace_ms)
        self.emit(labelled, self.watermark)
        self.stats.outputs["open_recommendations"] = float(self.join.open_count())
        return len(labelled)

    def emit(self, labelled: list[tuple[dict, int, dict]], resolved_at: int) -> None:
        for item, label, rec in labelled:
            fb = {"rec_id": rec["rec_id"], "user_id": rec["user_id"], "item_id": item["item_id"],
                  "category": item.get("category"), "rank": item["rank"], "label": label, "score": item["score"],
                  "model_name": rec["model_name"], "model_version": rec["model_version"], "variant": rec["variant"],
                  "features": item_features(rec["features"], item), "served_at": rec["created"],
                  "resolved_at": resolved_at}
            self.out.produce(self.topic, self.registry.encode("Feedback", fb), key=rec["user_id"].encode())
            self.stats.count("out")
            self.stats.add_output("positives" if label else "negatives")


class ScoreStage:
    def __init__(self, cfg: RecommendConfig, request_types: tuple[str, ...], users: UserStates, catalog: Catalog,
                 slot: ModelSlot, join: FeedbackJoin, feedback: FeedbackStage, out: Output,
                 registry: SchemaRegistry, topic: str = "recommendations.v1",
                 shadow_topic: str = "recommendations.shadow.v1") -> None:
        self.cfg, self.request_types, self.users, self.catalog = cfg, frozenset(request_types), users, catalog
        self.slot, self.join, self.feedback, self.out, self.registry, self.topic = \
            slot, join, feedback, out, registry, topic
        self.shadow_topic = shadow_topic
        self.stats = StageStats("score")
        self.route = Routing()

    def handle(self, ev: dict, pos: Position, msg: RawMessage) -> dict | None:
        self.catalog.update(ev.get("item_id"), ev.get("category"), ev["event_type"], ev["timestamp"])
        if ev["event_type"] not in self.request_types:
            return None
        stats = self.stats
        stats.count("in")
        t0 = time.perf_counter()
        profile = self.users.get(ev["user_id"], pos.partition).profile
        variant = self.route.pick(ev["user_id"])
        slot = self.route.challenger if variant == "challenger" else self.slot
        rec, items = self._recommend(ev, profile, slot, "challenger" if variant == "challenger" else "champion")
        self.out.produce(self.topic, self._wire(rec), key=ev["user_id"].encode(), partition=pos.partition)
        self.feedback.emit(self.join.on_recommendation(rec), ev["timestamp"])
        stats.count("out")
        stats.add_output(f"served_{rec['variant']}")
        if variant == "shadow":  # scored, never served, never joined with clicks
            shadow, _ = self._recommend(ev, profile, self.route.challenger, "shadow")
            self.out.produce(self.shadow_topic, self._wire(shadow), key=ev["user_id"].encode(),
                             partition=pos.partition)
            stats.add_output("shadow_recommendations")
        stats.event_lag(time.perf_counter() - t0)  # scoring time per request
        if not items:
            stats.add_output("empty_recommendations")
        else:
            stats.add_output("score_sum", sum(i["score"] for i in items) / len(items))
        return None

    def _recommend(self, ev: dict, profile: dict, slot: ModelSlot, variant: str) -> tuple[dict, list[dict]]:
        scorer = slot.scorer
        items, user, n = recommend(profile, self.catalog, scorer, self.cfg)
        for rank, it in enumerate(items):
            it["rank"] = rank
        rec = {"rec_id": uuid.uuid4().hex, "user_id": ev["user_id"], "request_event_id": ev["event_id"],
               "created": ev["timestamp"], "model_name": slot.name, "model_version": scorer.version,
               "variant": variant, "items": items, "features": user, "candidates": n}
        return rec, items

    def _wire(self, rec: dict) -> bytes:
        return self.registry.encode("Recommendation",
                                    dict(rec, items=[{k: v for k, v in it.items() if k != "rank"} for it in rec["items"]]))
