"""``stream replay`` through the real pipeline: a private embedded stack, a real worker.

1. start a broker and Redis of its own (a temporary state folder: never the operator's stack),
   create the topics, start one worker running every stage (ingest, retrieve, profile,
   feedback, score, learn) with the replay's settings;
2. produce the log's events in time order as batch envelopes, each on its users' partition,
   while reading ``recommendations.v1``: no partition gets more than its share of ``ahead``
   events' requests in front of its answers, so none runs far ahead of the others in event
   time (relations learned from one partition's future would leak into another's lists);
3. hand each Recommendation to the caller, read the worker's candidate recall from
   ``/metrics``, stop everything it started.

A user's events share a partition, so a request already sees that user's earlier events:
requests never wait for their answers (a closed loop took ~29 ms per request here).
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from typing import Callable

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from stream.adapters.kafka import client_conf, ensure_topology, producer
from stream.config import Settings
from stream.errors import BrokerError, StreamError
from stream.log import event
from stream.monitor import sample_value, scrape
from stream.partitioning import partition_for
from stream.replay.events import to_events
from stream.replay.inprocess import replay_settings
from stream.replay.log import Interaction
from stream.serde import SchemaRegistry
from stream.stack import Stack, stop_pid
from stream.topology import Topology

log = logging.getLogger("stream.replay")


def worker_env(settings: Settings, overrides: dict[str, str]) -> dict[str, str]:
    """The replay's settings for the worker, as environment variables."""
    env = {"STREAM_INGEST_MAX_SKEW_S": repr(settings.ingest.max_skew_s),
           "STREAM_MODEL_EXPLORE": repr(settings.model.explore),
           "STREAM_MODEL_SERVED_WEIGHT": repr(settings.model.served_weight),
           "STREAM_MODEL_SERVED_FEEDBACK": "true" if settings.model.served_feedback else "false",
           "STREAM_MODEL_POLICY": settings.model.policy,
           "STREAM_MONITOR_INTERVAL_S": "1.0"}
    env.update(overrides)
    return env


def _model_version(redis_url: str, settings: Settings, registry: SchemaRegistry) -> int:
    from stream.adapters.registry import ModelRegistry  # noqa: PLC0415
    models = ModelRegistry(redis_url, settings.model.hmac_key, registry, settings.redis.key_prefix)
    try:
        latest = models.latest(settings.model.name)
        return int(latest["version"]) if latest else 0
    finally:
        models.close()


def _wait_assigned(scorers: list, partitions: int, timeout_s: float = 90.0) -> None:
    """Until the scorers' latest assignments cover every clicks.v1 partition, each at least one."""
    import re  # noqa: PLC0415
    from stream.stack import wait_until  # noqa: PLC0415

    def spread() -> bool:
        owned = []
        for _, path, _ in scorers:
            found = re.findall(r'event=partitions_assigned worker=\S+ partitions="?\[([0-9, ]*)\]"?', path.read_text())
            if not found or not found[-1].strip():
                return False
            owned += [int(x) for x in found[-1].split(",")]
        return sorted(owned) == list(range(partitions))
    if not wait_until(spread, timeout_s, 0.2):
        raise StreamError(f"the {len(scorers)} scorers did not share the {partitions} partitions within "
                          f"{timeout_s:.0f}s; see {scorers[0][1]}")


def run_pipeline(rows: list[Interaction], min_rating: float | None, settings: Settings,
                 on_recommendation: Callable[[dict], None], n_requests: int,
                 progress: Callable[[int], None] | None = None, batch: int = 50, ahead: int = 4000,
                 answer_timeout_s: float = 60.0, worker_overrides: dict[str, str] | None = None,
                 keep_dir: bool = False, workers: int = 1, **_: object) -> dict:
    """Replay ``rows`` through a real worker; returns what the worker reported."""
    from stream.demo import start_worker  # noqa: PLC0415 - the demo's worker start, readiness included
    settings = replay_settings(settings, rows)
    state_dir = tempfile.mkdtemp(prefix="stream-replay-")
    settings = settings.replace(stack={"state_dir": state_dir, "broker_port": 0, "redis_port": 0},
                                kafka={"bootstrap_servers": ""}, redis={"url": ""})
    stack = Stack(settings)
    learner = None
    scorers: list = []
    try:
        procs, _ = stack.up()
        bootstrap, redis_url = procs["broker"].endpoint, procs["redis"].endpoint
        topology = Topology.load(settings.paths.topology)
        ensure_topology(bootstrap, topology)
        partitions = topology.topic("clicks.v1").partitions
        env = worker_env(settings, worker_overrides or {})
        # the learner in a process of its own, as in production: beside the clicks stages it was
        # starved (the scoring worker's loop is busy with every event; measured: 4 releases in 73 s)
        learner, learner_log, _ = start_worker(settings, bootstrap, redis_url, "replay-learn", stages="learn",
                                               extra_env=env)
        for k in range(workers):  # scorers: the consumer group spreads the partitions over them
            started = start_worker(settings, bootstrap, redis_url, f"replay{k + 1}" if workers > 1 else "replay",
                                   stages="ingest,profile,feedback,score", extra_env=env)
            scorers.append(started)
        if workers > 1:  # every scorer owns its partitions before the first event
            _wait_assigned(scorers, partitions)
        worker, log_path, port = scorers[0]
        event(log, "replay_workers_ready", scorers=",".join(str(w[0].pid) for w in scorers),
              learner_pid=learner.pid, log=str(log_path), broker=bootstrap)
        registry = SchemaRegistry(settings.paths.schemas_dir)
        consumer = Consumer(client_conf(bootstrap, **{"group.id": "stream-replay", "enable.auto.commit": False,
                             "fetch.wait.max.ms": 20}))
        rec_parts = topology.topic("recommendations.v1").partitions
        consumer.assign([TopicPartition("recommendations.v1", p, OFFSET_BEGINNING) for p in range(rec_parts)])
        prod = producer(bootstrap, **{"linger.ms": 2})
        answered = [0]

        waiting: dict[str, int] = {}  # request event id -> its partition, until answered
        behind = [0] * partitions     # unanswered requests per partition

        def drain(timeout: float) -> None:
            for msg in consumer.consume(1000, timeout):
                if msg.error():
                    raise BrokerError(f"reading recommendations.v1: {msg.error()}")
                rec = registry.decode("Recommendation", msg.value())
                q = waiting.pop(rec["request_event_id"], None)
                if q is not None:
                    behind[q] -= 1
                on_recommendation(rec)
                answered[0] += 1

        pending: dict[int, list[dict]] = {}
        asked = 0
        # each partition at most this many requests ahead of its answers (about `ahead` events overall)
        limit = max(batch, ahead * n_requests // max(1, len(rows)) // partitions)

        def flush_partition(p: int) -> None:
            events = pending.pop(p)
            prod.produce("clicks.v1", registry.encode_envelope(events, "stream-replay"), partition=p)

        for n, ev in enumerate(to_events(rows, min_rating), start=1):
            p = partition_for(ev["user_id"], partitions)
            if ev["event_type"] == "recommend_request":
                asked += 1
                waiting[ev["event_id"]] = p
                behind[p] += 1
            pending.setdefault(p, []).append(ev)
            if len(pending[p]) >= batch:
                flush_partition(p)
            if n % batch == 0:
                for q in list(pending):  # nothing waits long in a half-full envelope
                    flush_partition(q)
                prod.poll(0)
                drain(0)
                deadline = time.monotonic() + answer_timeout_s
                while max(behind) > limit:  # a partition that stalls holds the others back
                    for proc, path, _ in scorers:
                        if proc.poll() is not None:
                            raise StreamError(f"a worker exited with code {proc.returncode}; see {path}")
                    if time.monotonic() > deadline:
                        raise StreamError(f"no recommendation for {answer_timeout_s:.0f}s "
                                          f"({answered[0]:,} of {asked:,} answered); see {log_path}")
                    prod.poll(0)
                    drain(0.05)
                if progress is not None:
                    progress(n)
        for q in list(pending):
            flush_partition(q)
        prod.flush(30)
        del prod  # librdkafka's clients go before the broker does (no disconnect noise)
        deadline = time.monotonic() + answer_timeout_s
        while answered[0] < asked and time.monotonic() < deadline:
            drain(0.2)
        consumer.close()
        texts = [scrape(p) or "" for _, _, p in scorers]
        learned = _model_version(redis_url, settings, registry)
        return {"unanswered": asked - answered[0], "worker_log": str(log_path), "workers": workers,
                "recall_trials": sum(sample_value(t, 'stream_recall_trials{stage="score"}') for t in texts),
                "recall_hits": sum(sample_value(t, 'stream_recall_hits{stage="score"}') for t in texts),
                "relations_folded_remote": sum(sample_value(t, 'stream_relations_folded_remote{stage="score"}')
                                               for t in texts),
                "model_version": learned}
    finally:
        for proc in [learner] + [w[0] for w in scorers]:
            if proc is not None:
                stop_pid(proc.pid, 20)
        stack.down()
        if not keep_dir:
            shutil.rmtree(state_dir, ignore_errors=True)
