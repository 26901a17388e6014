"""The composition root of a worker: builds the Faust app and wires the stages it runs.

The clicks stages (ingest, profile, and score/feedback when asked) run fused: librdkafka reads
``clicks.v1`` inside Faust's group (:mod:`stream.app.native`) and hands each message to the
shared :class:`~stream.runner.StageRunner` (wired in :mod:`stream.app.clicks`). State lives in
a changelog-backed Faust table (``profiles``); the checkpoint (:mod:`stream.app.checkpoint`)
writes each changed user once per cut through the fast output port and only then lets Faust
commit the input, so state and outputs are never behind the committed input. Redis is written
behind (:mod:`stream.app.redis_sync`). The learner and the drift monitor run in workers of
their own (``--stages learn`` / ``drift``).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import ssl
import sys
import time
from dataclasses import dataclass, field

import faust
from prometheus_client import generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from stream.adapters.dlq import KafkaDeadLetters
from stream.adapters.output import Output
from stream.adapters.registry import ModelRegistry, newest_release
from stream.app import compat
from stream.app.health import BrokerWatch, Health, down_for
from stream.config import Settings, core_config, production_problems
from stream.core.learn import variant_weights
from stream.core.profile import ProfileConfig
from stream.errors import SerdeError, StreamError
from stream.log import event, logging_config
from stream.monitor import GcPauses, StageStats, registry_for
from stream.runner import StageRunner
from stream.serde import SchemaRegistry
from stream.stages import SIDE_STAGES, STAGES
from stream.stages.ingest import IngestStage
from stream.stages.learn import LearnLoop
from stream.stages.profile import ProfileStage
from stream.stages.score import FeedbackStage, ModelSlot, RetrieveStage, ScoreStage, scoring_stages
from stream.topology import Topology
from stream.users import Flushed, UserStates

log = logging.getLogger("stream.worker")
EXIT_FATAL = 70


def die(reason: str) -> None:
    """Stop the worker now with a non-zero exit and one clear log line (offsets stay uncommitted)."""
    event(log, "worker_fatal", logging.CRITICAL, reason=reason, exit_code=EXIT_FATAL)
    for h in logging.getLogger().handlers:
        h.flush()
    os._exit(EXIT_FATAL)


class TableStore:
    """The :class:`~stream.users.TablePort` over a Faust table: its store, plus its changelog topic."""

    def __init__(self, table: faust.Table, out: Output) -> None:
        self.table, self.out = table, out
        self.changelog = table.changelog_topic.get_topic_name()

    def get(self, user_id: str) -> bytes | None:
        return self.table.data.get(user_id.encode())

    def put(self, user_id: str, value: bytes, partition: int) -> None:
        key = user_id.encode()
        self.table.data[key] = value
        self.out.produce(self.changelog, value, key=key, partition=partition)


@dataclass
class Worker:
    settings: Settings
    worker_id: str
    app: faust.App
    out: Output
    users: UserStates | None
    runner: StageRunner | None
    stats: list[StageStats]
    monitor_topics: dict[str, str]
    registry: SchemaRegistry
    assigned: set[int] = field(default_factory=set)
    resync: bool = False
    redis_pending: dict[str, Flushed] = field(default_factory=dict)
    models: ModelRegistry | None = None
    slot: ModelSlot | None = None
    feedback: FeedbackStage | None = None
    learn: LearnLoop | None = None
    score: ScoreStage | None = None
    retrieve: RetrieveStage | None = None
    table: faust.Table | None = None
    native: object | None = None  # stream.app.native.NativeSource, reading clicks.v1
    checkpoint: object | None = None  # stream.app.checkpoint.Checkpoint: state written in cuts
    gc_pauses: GcPauses = field(default_factory=lambda: GcPauses().install())  # a lag spike's usual suspect
    health: Health = field(default_factory=Health)
    started: bool = False  # Faust has finished its first rebalance (and recovery)

    def emit_flushed(self, flushed: list[Flushed]) -> int:
        """Users just written to the table: their profiles to profiles.v1 and the Redis queue."""
        for f in flushed:
            self.out.produce("profiles.v1", f.profile_bytes, key=f.user_id.encode(), partition=f.partition)
            self.redis_pending[f.user_id] = f  # the Redis task writes the newest one per user
        self.stage("profile").add_output("profiles_emitted", len(flushed))
        return len(flushed)

    async def deliver(self) -> None:
        """Wait until every output produced so far is acknowledged (raises StreamError if one failed)."""
        await self.out.wait_delivered(self.out.last_seq)

    def stage(self, name: str) -> StageStats:
        return next(s for s in self.stats if s.stage == name)

    def emit_monitor(self) -> None:
        gc_pause_ms = self.gc_pauses.take()  # one process: every stage's record carries it
        for s in self.stats:
            s.max_output("gc_pause_ms_max", gc_pause_ms)
            record = s.snapshot(self.worker_id)
            self.out.produce(self.monitor_topics[s.stage], self.registry.encode("StageMetrics", record),
                             key=f"{s.stage}/{self.worker_id}".encode())
        self.out.poll()


async def decoded(w: Worker, stream: faust.StreamT, schema: str):  # noqa: ANN201 - an async generator
    """The records of a raw stream decoded with ``schema``; an undecodable one is logged and skipped
    (control and alert topics are written by this project's own tools)."""
    async for raw in stream:
        try:
            yield w.registry.decode(schema, raw)
        except SerdeError as exc:
            event(log, "undecodable", logging.WARNING, schema=schema, error=str(exc))


def broker_credentials(k) -> object | None:  # noqa: ANN001 - stream.config.KafkaSettings
    """Faust's (aiokafka's) credentials for ``kafka.security_protocol``; None for PLAINTEXT or the
    embedded broker (no bootstrap servers set)."""
    if k.security_protocol == "PLAINTEXT" or not k.bootstrap_servers:
        return None
    ctx = None
    if k.security_protocol.endswith("SSL"):
        ctx = ssl.create_default_context(cafile=k.ssl_ca_file or None)
        if k.ssl_cert_file:
            ctx.load_cert_chain(k.ssl_cert_file, k.ssl_key_file)
    if k.security_protocol.startswith("SASL_"):
        return faust.SASLCredentials(username=k.sasl_username, password=k.sasl_password, mechanism=k.sasl_mechanism,
                                     ssl_context=ctx)
    return faust.SSLCredentials(ctx)


def build(settings: Settings, stages: tuple[str, ...] = STAGES, worker_id: str | None = None) -> Worker:
    """Build the Faust app and wire the stages (nothing runs until the worker starts)."""
    unknown = set(stages) - set(STAGES)
    if unknown:
        raise StreamError(f"unknown stage(s) {', '.join(sorted(unknown))}; this worker runs: {', '.join(STAGES)}")
    side_only = set(stages) <= SIDE_STAGES  # no clicks stages
    if not side_only and not {"ingest", "profile"} <= set(stages):
        raise StreamError("ingest and profile run fused on one consumer (no repartition hop): include both in "
                          "--stages, or run the learner and/or drift alone (--stages learn / drift / learn,drift)")
    if "drift" in stages and len(stages) > 1:
        raise StreamError("drift runs in its own worker (--stages drift): it must see every partition of the "
                          "monitored topics and starts from their newest records (its reference is what comes next)")
    if ("score" in stages) != ("feedback" in stages):
        raise StreamError("score and feedback share the join of recommendations and clicks: run both or neither")
    compat.require()
    if problems := production_problems(settings):
        raise StreamError("refusing to start in production mode: " + "; ".join(problems))
    topology = Topology.load(settings.paths.topology)
    registry = SchemaRegistry(settings.paths.schemas_dir)
    clicks = topology.topic("clicks.v1")
    table_decl = topology.stage("profile").tables[0]
    f = settings.faust
    worker_id = worker_id or settings.monitor.worker_id or f"{os.uname().nodename}-{os.getpid()}"
    datadir = f.data_dir or os.path.join(settings.stack.state_dir, "faust", worker_id)
    os.makedirs(datadir, exist_ok=True)
    # with clicks.v1 read natively Faust's consumer fetches only the side topics (model control,
    # feedback, changelogs when recovering): each of its fetches costs the broker and aiokafka's
    # thread CPU that the clicks path needs (20 ms doubled the p99 lag at 20k events/s)
    compat.tune_fetch_wait(f.fetch_max_wait_ms if side_only else f.side_fetch_wait_ms)
    app = faust.App(
        f.app_id + ("-" + "-".join(sorted(stages)) if side_only else ""), broker=f"kafka://{settings.kafka.bootstrap_servers}", store="memory://",
        processing_guarantee=f.processing_guarantee, broker_session_timeout=f.broker_session_timeout_s,
        broker_heartbeat_interval=f.broker_heartbeat_interval_s, producer_linger=f.producer_linger_ms / 1000,
        broker_commit_every=f.broker_commit_every, broker_commit_interval=f.broker_commit_interval_s,
        web_enabled=f.web_enabled, web_port=f.web_port, web_bind=f.web_bind, datadir=datadir,
        topic_partitions=clicks.partitions, key_serializer="raw", value_serializer="raw",
        table_cleanup_interval=3600.0, stream_wait_empty=False, worker_redirect_stdouts=False,
        consumer_auto_offset_reset="latest" if "drift" in stages else "earliest",
        broker_credentials=broker_credentials(settings.kafka))
    out = Output(settings.kafka.bootstrap_servers, linger_ms=f.producer_linger_ms, client_id=f"stream-{worker_id}")
    if not side_only:
        table = app.Table(table_decl.name, partitions=table_decl.partitions, key_type=bytes, value_type=bytes)
        compat.install_true_changelog_ends(die)
        users = UserStates(TableStore(table, out), registry)
    ingest_cfg = settings.ingest
    profile_cfg = core_config(settings.profile, ProfileConfig)
    handlers: list = [] if side_only else [
        IngestStage(ingest_cfg, users, out, registry, clicks.name, clicks.partitions), ProfileStage(profile_cfg, users)]
    m = settings.model
    slot = feedback = learn = score = retrieve = None
    if "score" in stages:
        sink = None
        if m.share_relations:
            from stream.app.relations import RelationBroadcast, new_origin  # noqa: PLC0415
            sink = RelationBroadcast(out, registry, new_origin(worker_id),
                                     partitions=topology.topic("relations.v1").partitions, window=m.relations_window)
        retrieve, feedback, score = scoring_stages(m, users, out, registry, sink=sink)
        slot = score.slot
        handlers = handlers[:1] + [retrieve] + handlers[1:] + [feedback, score]
    stats = [h.stats for h in handlers if h.stats.stage != "retrieve"]
    models = ModelRegistry(settings.redis.url, m.hmac_key, registry, settings.redis.key_prefix)
    if "learn" in stages:
        learn = LearnLoop(models, registry, out, m.name, m.learning_rate, m.k, m.release_every_examples,
                          m.release_every_s, rollout=settings.rollout, weights=variant_weights(m),
                          average_over=m.average_over,
                          history=lambda: newest_release(settings.kafka.bootstrap_servers, registry, m.name))
        stats += [learn.stats, learn.rollout.stats]
    drift = None
    if "drift" in stages:
        from stream.drift_setup import drift_config, drift_thresholds  # noqa: PLC0415
        from stream.stages.drift import DriftStage  # noqa: PLC0415
        from stream.core.drift_monitor import river_detectors  # noqa: PLC0415
        d = settings.drift
        drift = DriftStage(drift_config(settings), drift_thresholds(settings), ingest_cfg, registry, out,
                           d.idle_close_s, river_detectors(d.adwin_delta, d.page_hinkley_threshold),
                           attribution_ms=int(m.attribution_window_s * 1000))
        stats.append(drift.stats)
    runner = StageRunner(handlers, KafkaDeadLetters(out, registry, pseudonymise_key=ingest_cfg.pseudonymise_key), registry) if handlers else None
    w = Worker(settings, worker_id, app, out, None if side_only else users, runner, stats,
               {s.stage: topology.stage(s.stage).monitor for s in stats}, registry,
               models=models, slot=slot, feedback=feedback, learn=learn, score=score, retrieve=retrieve)
    _wire_common(w)
    if not side_only:
        from stream.app.clicks import wire_clicks  # noqa: PLC0415 - it imports this module
        wire_clicks(w, clicks, table)
    from stream.app import recommender  # noqa: PLC0415 - it imports this module
    if slot is not None:
        recommender.wire_scoring(w)
    if learn is not None:
        fb = topology.topic("feedback.v1")
        raw = {"key_serializer": "raw", "value_serializer": "raw"}
        recommender.wire_learning(w, app.topic(fb.name, partitions=fb.partitions, **raw),
                                  app.topic("control.v1", partitions=topology.topic("control.v1").partitions, **raw),
                                  app.topic("alerts.v1", partitions=topology.topic("alerts.v1").partitions, **raw))
    if drift is not None:
        from stream.app.drift import wire_drift  # noqa: PLC0415
        from stream.stages.drift import SOURCES  # noqa: PLC0415
        raw = {"key_serializer": "raw", "value_serializer": "raw"}
        topics = {name: app.topic(name, partitions=topology.topic(name).partitions, **raw) for name in SOURCES}
        wire_drift(w, drift, topics, app.topic("control.v1", partitions=topology.topic("control.v1").partitions, **raw))
    return w


class RecoveryProgress:
    """What a recovering worker says once a second: records left, rate, ETA; then how it ended.

    >>> p = RecoveryProgress()
    >>> p.update(None, 0.0) is None  # not recovering
    True
    >>> p.update(9000, 1.0)["event"]
    'recovery_started'
    >>> p.update(6000, 2.0)
    {'event': 'recovery_progress', 'remaining': 6000, 'records_per_s': 3000, 'eta_s': 2.0}
    >>> p.update(None, 3.5)
    {'event': 'recovery_done', 'records': 9000, 'seconds': 2.5}
    """

    def __init__(self) -> None:
        self.started_at: float | None = None
        self.first = 0  # records left when the recovery started

    def update(self, remaining: int | None, now: float) -> dict | None:
        if remaining is None:
            if self.started_at is None:
                return None
            seconds, records = now - self.started_at, self.first
            self.started_at = None
            return {"event": "recovery_done", "records": records, "seconds": round(seconds, 1)}
        if self.started_at is None:
            self.started_at, self.first = now, remaining
            return {"event": "recovery_started", "remaining": remaining}
        done = self.first - remaining
        rate = done / max(now - self.started_at, 1e-9)
        return {"event": "recovery_progress", "remaining": remaining, "records_per_s": round(rate),
                "eta_s": round(remaining / rate, 1) if rate > 0 else None}


def _wire_common(w: Worker) -> None:
    """What every worker has: /metrics and the monitoring records of its stages."""
    app = w.app
    prom = registry_for(w.stats)

    @app.page("/metrics")
    async def metrics(web: faust.web.Web, request: faust.web.Request) -> faust.web.Response:
        # the exposition format's version and charset in the header (aiohttp's content_type
        # argument refuses a charset, a header does not); 0.0.4: what Prometheus 2 and 3 both read
        return web.bytes(generate_latest(prom), headers={"Content-Type": CONTENT_TYPE_PLAIN_0_0_4})

    health, out, settings = w.health, w.out, w.settings
    health.add("start", lambda: None if w.started else "joining the consumer group (no assignment yet)")
    health.add("rebalance", lambda: "rebalancing or recovering the table" if app.rebalancing else None)
    health.add("broker", lambda: down_for(out.broker_down_since))
    if w.users is not None:
        limit = settings.monitor.ready_max_lag

        def behind() -> str | None:
            lag = w.stage("ingest").gauges.get("consumer_lag", -1)
            return f"{lag:.0f} messages behind (monitor.ready_max_lag={limit})" if lag > limit else None
        health.add("lag", behind)

    @app.page("/ready")
    async def ready(web: faust.web.Web, request: faust.web.Request) -> faust.web.Response:
        reasons = health.reasons()
        return web.json({"ready": not reasons, "worker": w.worker_id, "reasons": reasons},
                        status=503 if reasons else 200)

    progress = RecoveryProgress()

    @app.timer(1.0)
    async def ready_gauge() -> None:
        ok = 0.0 if health.reasons() else 1.0
        for s in w.stats:
            s.gauges["ready"] = ok
        line = progress.update(compat.recovery_remaining(app), time.monotonic())
        if line is not None:
            event(log, line.pop("event"), worker=w.worker_id, **line)

    @app.on_rebalance_complete.connect
    async def first_assignment(app: faust.App, **kwargs: object) -> None:
        w.started = True

    @app.task
    async def freeze_startup_objects() -> None:
        """Move everything start-up made (modules, Faust, the stages) out of the collector's
        reach: a full collection walked all of it and held the loop ~160 ms (one per run,
        measured with gc_pause_ms_max); what the worker makes later stays collectable."""
        gc.collect()
        gc.freeze()
        event(log, "gc_frozen", worker=w.worker_id, objects=gc.get_freeze_count())

    @app.timer(w.settings.monitor.interval_s)
    async def monitor() -> None:
        if w.users is not None:
            _update_consumer_lag(w)
            _table_size(w, w.table)
        w.emit_monitor()


def _table_size(w: Worker, table: faust.Table) -> None:
    """Entries and bytes held by the table's store (keys, values and the dict's own slots)."""
    data = table.data.data if hasattr(table.data, "data") else table.data
    n = len(data)
    size = sys.getsizeof(data) + sum(sys.getsizeof(k) + sys.getsizeof(v) for k, v in list(data.items()))
    outputs = w.stage("profile").outputs
    outputs["table_entries"] = float(n)
    outputs["table_bytes"] = float(size)
    outputs["table_bytes_per_profile"] = size / n if n else 0.0


def _update_consumer_lag(w: Worker) -> None:
    """Lag from the consumer's highwater marks (Tansu reports them low: a lower bound, clamped at 0),
    in messages and in events (messages x the events per message read so far: a message is one
    event or a batch of up to a hundred, so 6,262 messages behind was ~626k events)."""
    try:
        lag = w.native.lag()
        ingest = w.stage("ingest")  # a message holds one event or a batch: lag in events, estimated
        per_message = ingest.totals.get("in", 0.0) / ingest.messages_total if ingest.messages_total else 1.0
        for s in w.stats:
            s.gauges["consumer_lag"] = -1 if lag is None else lag
            s.gauges["consumer_lag_events"] = -1 if lag is None else round(lag * max(per_message, 1.0))
        if w.native is not None:  # fetched for an earlier assignment or read before: dropped, not processed
            w.stage("ingest").gauges["reader_stale_dropped"] = w.native.stale_dropped
    except Exception as exc:  # lag is best effort; never let it stop the monitor
        event(log, "lag_unavailable", logging.DEBUG, error=str(exc))


def run(settings: Settings, stages: tuple[str, ...] = STAGES, worker_id: str | None = None) -> int:
    """Run the worker until it is stopped (SIGTERM/SIGINT); returns the exit code."""
    w = build(settings, stages, worker_id)
    event(log, "worker_starting", worker=w.worker_id, stages=",".join(stages),
          broker=settings.kafka.bootstrap_servers, web_port=settings.faust.web_port)
    worker = faust.Worker(w.app, loglevel=settings.faust.log_level.upper(), quiet=True,
                          logging_config=logging_config(settings.faust.log_level), redirect_stdouts=False)
    BrokerWatch(w.out, settings.kafka.outage_limit_s, die).start()
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        return int(exc.code or 0)
    finally:
        w.out.close()
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(run(Settings.load()))
