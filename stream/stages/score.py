"""retrieve, feedback and score handlers, fused with ingest and profile on clicks.v1.

retrieve (before profile, so it sees the user as they were before the event): every
interaction updates the catalog and the item relations; a positive one is also a labelled
example for the learner (the picked item against candidates the user did not pick, variant
``organic``) and a trial of candidate recall. feedback: every event is matched against the
user's open recommendations (positives at once); a timer closes windows that event time has
passed (negatives). score: an event whose type asks for recommendations gets the top-k from
the current model, emitted to recommendations.v1 and opened in the join.
"""

from __future__ import annotations

import random
import time
import uuid
from typing import Callable, Protocol

import numpy as np

from stream.adapters.output import Output
from stream.core.catalog import Catalog
from stream.core.feedback import POSITIVE_TYPES, FeedbackJoin
from stream.core.model import Scorer, export, new_model, pair_features, user_features
from stream.core.profile import TYPE_WEIGHT, Position, consumed, is_replay
from stream.core.recommend import (POLICIES, RECONSUME, Candidates, Reconsumption, RecommendConfig, candidates,
                                   item_features, recommend, score)
from stream.core.relations import ItemRelations
from stream.core.rollout import RolloutState, serves_challenger
from stream.errors import ConfigError
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


class RelationSink(Protocol):
    """Where a worker's own interactions go so that other workers' relations learn them too."""

    def add(self, item: str, category: str | None, event_type: str, recent: list[str], ts: int) -> None: ...


class Retrieval:
    """What every scorer of a worker shares: catalog, item relations, the re-consumption tracker."""

    def __init__(self, catalog: Catalog, relations: ItemRelations, reconsumption: Reconsumption | None = None,
                 remember: int = 2_000, batch: int = 1, stale_s: float = 0.1,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.catalog, self.relations = catalog, relations
        self.reconsumption = reconsumption or Reconsumption()
        #: the candidates of the latest list per user, while the user's profile has not changed:
        #: a click right after a request is judged (recall) and learned from on what was served
        self.served: dict[str, tuple[int, Candidates]] = {}
        self.remember = remember
        #: interactions waiting to be folded into the relations together (see :meth:`settle`)
        self.batch, self.stale_s, self.clock = batch, stale_s, clock
        self.pending: list[tuple[int, list[int], float, int]] = []
        self._pending_since = 0.0

    def remember_served(self, user: str, version: int, cands: Candidates) -> None:
        served = self.served
        served.pop(user, None)
        served[user] = (version, cands)
        if len(served) > self.remember:
            del served[next(iter(served))]

    def candidates_for(self, user: str, profile: dict, cfg: RecommendConfig, mask: bool) -> Candidates:
        """The candidates of the user's latest list if the profile is as it was then, else new ones."""
        hit = self.served.pop(user, None)
        if hit is not None and hit[0] == profile["version"]:
            return hit[1]
        self.settle()
        return candidates(profile, self.catalog, self.relations, cfg, mask)

    def fold(self, item: str, category: str | None, event_type: str, recent: list[str], ts: int) -> None:
        """One interaction (ours or, through the relation topic, another worker's): the catalog
        counts it at once; the relations fold it with the next ``batch`` - 1 (:meth:`settle`)."""
        catalog = self.catalog
        i = catalog.update(item, category, event_type, ts)
        if i < 0:
            return
        get = catalog.index.get
        ev = (i, [get(h, -1) for h in recent[:self.relations.window + 1]], TYPE_WEIGHT.get(event_type, 0.0), ts)
        if self.batch <= 1:
            self.relations.update(*ev)
            return
        if not self.pending:
            self._pending_since = self.clock()
        self.pending.append(ev)
        if len(self.pending) >= self.batch:
            self.settle(force=True)

    def settle(self, force: bool = False) -> None:
        """Fold the waiting interactions into the relations: when ``batch`` of them wait, or at a
        read once the first has waited ``stale_s`` (a read sees the relations at most that old,
        as it sees other workers' interactions a little late)."""
        if self.pending and (force or self.clock() - self._pending_since >= self.stale_s):
            self.relations.update_many(self.pending)
            self.pending = []


class RetrieveStage:
    """Before profile: fold each interaction into the shared retrieval state; learn from organic
    positives (the picked item and ``negatives`` candidates the user did not pick, on the
    feedback topic as variant ``organic``); count candidate recall. Its counters are the score
    stage's (``stats`` only serves the runner's timing)."""

    def __init__(self, cfg: RecommendConfig, users: UserStates, retrieval: Retrieval, slot: ModelSlot,
                 score_stats: StageStats, out: Output, registry: SchemaRegistry, topic: str = "feedback.v1",
                 negatives: int = 4, organic_share: float = 1.0, sink: RelationSink | None = None,
                 rng: random.Random | None = None) -> None:
        self.cfg, self.users, self.retrieval, self.slot = cfg, users, retrieval, slot
        self.score_stats, self.out, self.registry, self.topic = score_stats, out, registry, topic
        self.negatives, self.organic_share, self.sink = negatives, organic_share, sink
        self.rng = rng or random.Random()
        self.stats = StageStats("retrieve")

    def handle(self, ev: dict, pos: Position, msg: RawMessage) -> dict | None:
        item = ev.get("item_id")
        etype = ev["event_type"]
        if not item or not TYPE_WEIGHT.get(etype):
            return ev
        profile = self.users.get(ev["user_id"], pos.partition).profile
        if is_replay(profile, pos):
            return ev  # already folded before a restart: the profile stage counts it
        recent = profile["last_items"] if profile is not None else []
        if profile is not None and etype in POSITIVE_TYPES:
            r = self.retrieval.reconsumption
            r.observe(consumed(profile, item))
            if self.organic_share >= 1.0 or self.rng.random() < self.organic_share:
                self._organic(ev, profile, r.mask(self.cfg.reconsume))
        self.retrieval.fold(item, ev.get("category"), etype, recent, ev["timestamp"])
        if self.sink is not None:
            self.sink.add(item, ev.get("category"), etype, recent, ev["timestamp"])
        return ev

    def _organic(self, ev: dict, profile: dict, mask: bool) -> None:
        item, ret = ev["item_id"], self.retrieval
        cands = ret.candidates_for(ev["user_id"], profile, self.cfg, mask)
        stats = self.score_stats
        g = stats.gauges  # cumulative: the share of positives whose item was among the candidates
        g["recall_trials"] = g.get("recall_trials", 0.0) + 1
        e = ret.catalog.index.get(item, -1)
        found = np.flatnonzero(cands.idx == e) if e >= 0 else ()
        if len(found):
            g["recall_hits"] = g.get("recall_hits", 0.0) + 1
        g["candidate_recall"] = g.get("recall_hits", 0.0) / g["recall_trials"]
        if not len(found):
            return  # no generator proposed it: the ranker could not have shown it, nothing to learn
        j = int(found[0])
        scorer = self.slot.scorer
        user = user_features(profile)
        scores = score(cands, user, ret.catalog, scorer, "model")
        stats.add_output("organic_hits_at_k" if int((scores > scores[j]).sum()) < self.cfg.k else "organic_misses_at_k")
        picks = [(j, 1)] + [(k, 0) for k in self._negatives(len(cands), j)]
        names, key = ret.catalog.category_names, ev["user_id"].encode()
        for rank, (k, label) in enumerate(picks):
            category = names[cands.cat_idx[k]] if cands.cat_idx[k] >= 0 else None
            fb = {"rec_id": "organic:" + ev["event_id"], "user_id": ev["user_id"], "item_id": cands.item(k),
                  "category": category, "rank": rank, "label": label, "score": float(scores[k]),
                  "model_name": self.slot.name, "model_version": scorer.version, "variant": "organic",
                  "features": pair_features(user, category, cands.features_of(k)), "served_at": ev["timestamp"],
                  "resolved_at": ev["timestamp"]}
            self.out.produce(self.topic, self.registry.encode("Feedback", fb), key=key)
        stats.add_output("organic_examples", len(picks))

    def _negatives(self, n: int, j: int) -> list[int]:
        """Candidates the user did not pick, uniformly: negatives chosen from the top of the served
        model's list feed the model's own output back to it, and with a learner some seconds behind
        the scorers that oscillates (measured on ML-100k with the learner 3,000 positives behind:
        HR@10 0.145 with half the negatives from the top 20, 0.195 with uniform ones)."""
        picks = self.rng.sample(range(n - 1), min(self.negatives, n - 1))  # positions among the others
        return [k + (k >= j) for k in picks]


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
    def __init__(self, cfg: RecommendConfig, request_types: tuple[str, ...], users: UserStates, retrieval: Retrieval,
                 slot: ModelSlot, join: FeedbackJoin, feedback: FeedbackStage, out: Output,
                 registry: SchemaRegistry, topic: str = "recommendations.v1",
                 shadow_topic: str = "recommendations.shadow.v1", stats: StageStats | None = None,
                 join_served: bool = True) -> None:
        self.cfg, self.request_types, self.users, self.retrieval = cfg, frozenset(request_types), users, retrieval
        self.slot, self.join, self.feedback, self.out, self.registry, self.topic = \
            slot, join, feedback, out, registry, topic
        self.shadow_topic = shadow_topic
        #: open each served list in the join with later clicks (off: no served-list labels at all,
        #: e.g. in a replay, where nobody sees the lists)
        self.join_served = join_served
        self.stats = stats or StageStats("score")
        self.route = Routing()

    def handle(self, ev: dict, pos: Position, msg: RawMessage) -> dict | None:
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
        if self.join_served:
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
        scorer, ret = slot.scorer, self.retrieval
        mask = ret.reconsumption.mask(self.cfg.reconsume)
        if profile is None:  # a request from a user with no event yet: the popular items
            profile = {"last_items": [], "affinity": {}, "version": 0, "consumed": b""}
        ret.settle()
        items, user, cands = recommend(profile, ret.catalog, ret.relations, scorer, self.cfg, mask=mask)
        if variant != "shadow":
            ret.remember_served(ev["user_id"], profile["version"], cands)
        n = len(cands)
        for rank, it in enumerate(items):
            it["rank"] = rank
        rec = {"rec_id": uuid.uuid4().hex, "user_id": ev["user_id"], "request_event_id": ev["event_id"],
               "created": ev["timestamp"], "model_name": slot.name, "model_version": scorer.version,
               "variant": variant, "items": items, "features": user, "candidates": n}
        return rec, items

    def _wire(self, rec: dict) -> bytes:
        return self.registry.encode("Recommendation",
                                    dict(rec, items=[{k: v for k, v in it.items() if k != "rank"} for it in rec["items"]]))


def recommend_config(m) -> RecommendConfig:  # noqa: ANN001 - stream.config.ModelSettings
    """The recommender's parameters from the model settings (enumerated values checked)."""
    if m.policy not in POLICIES:
        raise ConfigError(f"model.policy {m.policy!r}: one of {', '.join(POLICIES)}")
    if m.reconsume not in RECONSUME:
        raise ConfigError(f"model.reconsume {m.reconsume!r}: one of {', '.join(RECONSUME)}")
    return RecommendConfig(m.k, m.candidates, policy=m.policy, explore=m.explore, reconsume=m.reconsume)


def scoring_stages(m, users: UserStates, out: Output, registry: SchemaRegistry, *,  # noqa: ANN001 - ModelSettings
                   slot: ModelSlot | None = None, feedback: FeedbackStage | None = None,
                   sink: RelationSink | None = None) -> tuple[RetrieveStage, FeedbackStage, ScoreStage]:
    """One worker's retrieve, feedback and score handlers, wired from the model settings.
    ``slot`` and ``feedback``: shared with another set (default: new ones)."""
    cfg = recommend_config(m)
    slot = slot or ModelSlot(m.name, export(new_model(m.learning_rate), version=0))
    feedback = feedback or FeedbackStage(FeedbackJoin(window_ms=int(m.attribution_window_s * 1000)), out, registry)
    relations = ItemRelations(width=m.relations_width, window=m.relations_window, half_life_s=m.relations_half_life_s)
    retrieval = Retrieval(Catalog(m.catalog_half_life_s), relations, batch=m.relations_batch,
                          stale_s=m.relations_stale_s)
    score = ScoreStage(cfg, m.request_types, users, retrieval, slot, feedback.join, feedback, out, registry,
                       join_served=m.served_feedback)
    retrieve = RetrieveStage(cfg, users, retrieval, slot, score.stats, out, registry,
                             negatives=m.organic_negatives, organic_share=m.organic_share, sink=sink)
    return retrieve, feedback, score
