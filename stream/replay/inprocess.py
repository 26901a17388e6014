"""``stream replay --in-process``: the pipeline's own stage code, without the broker.

The same :class:`~stream.runner.StageRunner` and stage handlers a worker runs (ingest,
retrieve, profile, feedback, score), over an in-memory table and output; each event is
encoded and decoded as on the broker, on the partition its user's key gives. The learner
is the same :class:`~stream.core.learn.Learner` the learn stage runs; it takes the feedback
records in the order they are produced and releases a new scorer every ``release_every``
examples, as the learn stage does (the worker's learner also releases on time, and its
scorers poll the registry: the pipeline's releases come a little later).
"""

from __future__ import annotations

import time
from typing import Callable

from stream.config import Settings, core_config
from stream.core.ingest import IngestConfig
from stream.core.learn import Learner, list_size, variant_weights
from stream.core.model import export, new_model
from stream.core.profile import ProfileConfig
from stream.partitioning import partition_for
from stream.replay.events import to_events
from stream.replay.log import Interaction
from stream.runner import RawMessage, StageRunner
from stream.serde import SchemaRegistry
from stream.stages.ingest import IngestStage
from stream.stages.profile import ProfileStage
from stream.stages.score import scoring_stages
from stream.topology import Topology
from stream.users import UserStates


class _Table:
    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}

    def get(self, user_id: str) -> bytes | None:
        return self.data.get(user_id)

    def put(self, user_id: str, value: bytes, partition: int) -> None:
        self.data[user_id] = value


class _Out:
    """Produced records, by topic, until taken."""

    def __init__(self) -> None:
        self.topics: dict[str, list[bytes]] = {}

    def produce(self, topic: str, value: bytes, key: bytes | None = None, partition: int | None = None,
                headers: dict | None = None) -> None:
        self.topics.setdefault(topic, []).append(value)

    def take(self, topic: str) -> list[bytes]:
        return self.topics.pop(topic, [])


class _DeadLetters:
    def __init__(self) -> None:
        self.reasons: dict[str, int] = {}

    def send(self, stage: str, exc: BaseException, reason: str, msg: RawMessage, raw: bytes,
             batch_index: int | None) -> None:
        self.reasons[reason] = self.reasons.get(reason, 0) + 1


def replay_settings(settings: Settings, rows: list[Interaction]) -> Settings:
    """Settings that let a historical log through ingest: its oldest event within the allowed skew."""
    now = time.time()
    age_s = max(0.0, now - rows[0].ts_ms / 1000) + 86400.0
    ahead_s = max(0.0, rows[-1].ts_ms / 1000 - now) + 86400.0  # a log dated ahead of this clock
    return settings.replace(ingest={"max_skew_s": max(settings.ingest.max_skew_s, age_s),
                                    "max_future_s": max(settings.ingest.max_future_s, ahead_s)})


def run_in_process(rows: list[Interaction], min_rating: float | None, settings: Settings,
                   on_recommendation: Callable[[dict], None], progress: Callable[[int], None] | None = None,
                   policy: str | None = None, isolated_workers: int = 1,
                   observe: Callable[[str, dict], None] | None = None, **_: object) -> dict:
    """Replay ``rows``; every Recommendation (decoded) goes to ``on_recommendation``.
    Returns the stage counters worth reporting.

    ``observe(topic, record)``, if given, sees what the drift worker would read: each input
    event (``clicks.v1``), each profile written (``profiles.v1``, every 1,000 events, as a
    worker writes its changed profiles at each checkpoint), each recommendation and each
    feedback record, decoded.

    ``isolated_workers`` > 1 measures what sharing the item relations is worth: the partitions
    are spread over that many workers, each with retrieval state learned from its own
    partitions' events only (one learner, as in the pipeline)."""
    settings = replay_settings(settings, rows)
    if policy is not None:
        settings = settings.replace(model={"policy": policy})
    registry = SchemaRegistry(settings.paths.schemas_dir)
    partitions = Topology.load(settings.paths.topology).topic("clicks.v1").partitions
    m = settings.model
    table, out, dlq = _Table(), _Out(), _DeadLetters()
    users = UserStates(table, registry)
    slot = feedback = None  # one learner's scorer and one join, whatever the number of workers
    ingest = IngestStage(core_config(settings.ingest, IngestConfig), users, out, registry, "clicks.v1", partitions)
    profile = ProfileStage(core_config(settings.profile, ProfileConfig), users)
    runners, scores = [], []
    for _w in range(max(1, isolated_workers)):
        retrieve, feedback, score = scoring_stages(m, users, out, registry, slot=slot, feedback=feedback)
        slot = score.slot
        runners.append(StageRunner([ingest, retrieve, profile, feedback, score], dlq, registry))
        scores.append(score)
    learner = Learner(new_model(m.learning_rate), m.name, 0, weights=variant_weights(m),
                      average_over=m.average_over)
    since_release = 0
    offsets = [0] * partitions
    for n, ev in enumerate(to_events(rows, min_rating)):
        part = partition_for(ev["user_id"], partitions)
        if observe is not None:
            observe("clicks.v1", ev)
        runners[part % len(runners)].process(RawMessage("clicks.v1", part, offsets[part], ev["user_id"].encode(),
                                  registry.encode_click(ev)))
        offsets[part] += 1
        for raw in out.take("recommendations.v1"):
            rec = registry.decode("Recommendation", raw)
            on_recommendation(rec)
            if observe is not None:
                observe("recommendations.v1", rec)
        if n % 64 == 0:
            feedback.close_windows()
        for raw in out.take("feedback.v1"):
            fb = registry.decode("Feedback", raw)
            if observe is not None:
                observe("feedback.v1", fb)
            learner.learn(fb["features"], fb["label"], fb["rec_id"], fb["variant"], list_size(fb["variant"], m.k))
            since_release += 1
        if since_release >= m.release_every_examples:
            slot.scorer = export(learner.serving_model(), slot.scorer.version + 1)
            since_release = 0
        if n % 1000 == 0:
            out.topics.clear()  # profiles, changelog: nobody reads them here
            for f in users.flush():
                if observe is not None:
                    observe("profiles.v1", registry.decode("UserProfile", f.profile_bytes))
            if progress is not None:
                progress(n)
    gauges = [sc.stats.gauges for sc in scores]
    return {"dead_letters": dlq.reasons, "model_version": slot.scorer.version,
            "recall_trials": sum(g.get("recall_trials", 0.0) for g in gauges),
            "recall_hits": sum(g.get("recall_hits", 0.0) for g in gauges),
            "learner": learner.metrics("organic")}
