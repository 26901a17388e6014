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
from stream.monitor import StageStats
from stream.runner import RawMessage
from stream.serde import SchemaRegistry
from stream.users import UserStates


class ModelSlot:
    """The scorer currently serving; swapped whole when a new release is loaded."""

    def __init__(self, name: str, scorer: Scorer) -> None:
        self.name, self.scorer = name, scorer


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
                 registry: SchemaRegistry, topic: str = "recommendations.v1") -> None:
        self.cfg, self.request_types, self.users, self.catalog = cfg, frozenset(request_types), users, catalog
        self.slot, self.join, self.feedback, self.out, self.registry, self.topic = \
            slot, join, feedback, out, registry, topic
        self.stats = StageStats("score")

    def handle(self, ev: dict, pos: Position, msg: RawMessage) -> dict | None:
        self.catalog.update(ev.get("item_id"), ev.get("category"), ev["event_type"], ev["timestamp"])
        if ev["event_type"] not in self.request_types:
            return None
        stats = self.stats
        stats.count("in")
        t0 = time.perf_counter()
        profile = self.users.get(ev["user_id"], pos.partition).profile
        scorer = self.slot.scorer
        items, user, n = recommend(profile, self.catalog, scorer, self.cfg)
        for rank, it in enumerate(items):
            it["rank"] = rank
        rec = {"rec_id": uuid.uuid4().hex, "user_id": ev["user_id"], "request_event_id": ev["event_id"],
               "created": ev["timestamp"], "model_name": self.slot.name, "model_version": scorer.version,
               "variant": "champion", "items": items, "features": user, "candidates": n}
        wire = dict(rec, items=[{k: v for k, v in it.items() if k != "rank"} for it in items])
        self.out.produce(self.topic, self.registry.encode("Recommendation", wire), key=ev["user_id"].encode(),
                         partition=pos.partition)
        self.feedback.emit(self.join.on_recommendation(rec), ev["timestamp"])
        stats.count("out")
        stats.event_lag(time.perf_counter() - t0)  # scoring time per request
        if not items:
            stats.add_output("empty_recommendations")
        else:
            stats.add_output("score_sum", sum(i["score"] for i in items) / len(items))
        return None
