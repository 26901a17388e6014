"""Faust wiring of the recommender: window closing, hot swap of model releases, the learner agent."""

from __future__ import annotations

import asyncio
import logging
import time

import faust

from stream.adapters.registry import ModelIntegrityError
from stream.app.health import down_for
from stream.app.redis_sync import Outage
from stream.app.worker import Worker, decoded, die
from stream.core.model import export
from stream.core.rollout import RolloutState
from stream.errors import StoreError, StreamError
from stream.log import event
from stream.stages.learn import LearnLoop
from stream.stages.score import ModelSlot

log = logging.getLogger("stream.worker")


def wire_scoring(w: Worker) -> None:
    app, m = w.app, w.settings.model
    refused: set[int] = set()

    @app.timer(1.0)
    async def close_windows() -> None:
        w.feedback.close_windows()

    sink = w.retrieve.sink if w.retrieve is not None else None
    if sink is not None:
        from stream.app.relations import RelationFollower  # noqa: PLC0415

        @app.timer(0.1)
        async def publish_relations() -> None:
            sink.flush()

        @app.task
        async def follow_relations() -> None:
            """Fold the other scorers' interactions as they arrive, a few records per turn."""
            follower = RelationFollower(w.settings.kafka.bootstrap_servers, w.registry, w.score.retrieval,
                                        sink.origin, w.stage("score"), partitions=sink.partitions)
            event(log, "relations_following", worker=w.worker_id, origin=sink.origin)
            try:
                while not app.should_stop:
                    n = follower.poll()  # on the loop: the retrieval state is the stages' own
                    await asyncio.sleep(0 if n else 0.05)
            except StreamError as exc:
                die(f"following relations.v1 failed: {exc}")
            finally:
                follower.close()

    @app.timer(m.poll_interval_s)
    async def follow_releases() -> None:
        """Hot swap: serve the latest release of the model, once its integrity is checked."""
        try:
            latest = await asyncio.to_thread(w.models.latest, m.name)
            if latest is None or latest["version"] in (w.slot.scorer.version, *refused):
                return
            model = await asyncio.to_thread(w.models.load, latest)
        except ModelIntegrityError as exc:
            refused.add(latest["version"])
            event(log, "model_refused", logging.ERROR, model=m.name, version=latest["version"],
                  serving=w.slot.scorer.version, error=str(exc))
            return
        except StoreError as exc:
            event(log, "registry_unavailable", logging.WARNING, error=str(exc))
            return
        w.slot.scorer = export(model, latest["version"])
        w.stage("score").add_output("model_swaps")
        event(log, "model_swapped", model=m.name, version=latest["version"], worker=w.worker_id)

    @app.timer(m.poll_interval_s)
    async def follow_rollout() -> None:
        """The rollout state and the challenger's newest snapshot (every worker routes alike)."""
        route = w.score.route
        try:
            raw = await asyncio.to_thread(w.models.rollout, m.name)
            state = RolloutState.from_dict(raw) if raw else None
            release = None
            if state is not None and state.mode != "idle":
                release = await asyncio.to_thread(w.models.pointer, m.name, "challenger")
            if release is None:
                route.challenger = None
            elif route.challenger is None or route.challenger.scorer.version != release["version"]:
                model = await asyncio.to_thread(w.models.load, release)
                route.challenger = ModelSlot(m.name, export(model, release["version"]))
                event(log, "challenger_loaded", model=m.name, version=release["version"], mode=state.mode,
                      share=state.share, worker=w.worker_id)
            if state is not None and (route.state is None or route.state.revision != state.revision):
                event(log, "rollout_followed", model=m.name, mode=state.mode, share=state.share,
                      champion=state.champion, challenger=state.challenger, worker=w.worker_id)
            route.state = state
        except (StoreError, ModelIntegrityError) as exc:
            event(log, "rollout_unavailable", logging.WARNING, error=str(exc))


def wire_learning(w: Worker, topic: faust.TopicT, control: faust.TopicT, alerts: faust.TopicT) -> None:
    app, learn = w.app, w.learn
    started_ms = int(time.time() * 1000)

    if w.users is None:  # a learner of its own: say when it owns feedback.v1 (the clicks wiring says it otherwise)
        @app.on_partitions_assigned.connect
        async def on_assigned(app: faust.App, assigned: set, **kwargs: object) -> None:
            event(log, "partitions_assigned", worker=w.worker_id, stage="learn",
                  partitions=sorted(f"{tp.topic}:{tp.partition}" for tp in assigned))

    def locked(fn, *args):  # noqa: ANN001, ANN202
        with learn.lock:
            return fn(*args)

    @app.agent(control, name="rollout_control")
    async def commands(stream: faust.StreamT) -> None:
        async for cmd in decoded(w, stream, "ControlCommand"):
            while learn.rollout.state is None:  # the learner is starting: apply the command once it runs
                await asyncio.sleep(0.1)
            try:
                await asyncio.to_thread(locked, learn.rollout.command, cmd)
            except StreamError as exc:
                die(f"rollout command failed: {exc}")
            except Exception as exc:  # never lose a command to a silently restarted agent
                die(f"unexpected {type(exc).__name__} applying a rollout command: {exc}")

    @app.agent(alerts, name="rollout_alarms")
    async def alarms(stream: faust.StreamT) -> None:
        async for alert in decoded(w, stream, "Alert"):
            name = alert["name"]
            if (learn.rollout.state is None or alert["created"] < started_ms
                    or not name.startswith("drift.predictions.") or "[challenger]" not in name
                    or name.endswith(".cleared")):
                continue
            try:
                await asyncio.to_thread(locked, learn.rollout.drift_alarm, alert)
            except StreamError as exc:
                die(f"rollout drift alarm failed: {exc}")
            except Exception as exc:
                die(f"unexpected {type(exc).__name__} applying a drift alarm: {exc}")

    outage = Outage("learner", w.settings.redis.outage_limit_s)
    w.health.add("registry", lambda: down_for(outage.since))

    @app.agent(topic, name="learn")
    async def learner(stream: faust.StreamT) -> None:
        while True:  # the registry lives in Redis: wait (bounded) for it
            try:
                await asyncio.to_thread(locked, learn.start)
                outage.ok()
                break
            except StoreError as exc:
                try:
                    outage.failed(exc)
                except StoreError as fatal:
                    die(f"learner could not start: {fatal}")
                await asyncio.sleep(min(5.0, 0.2 * 2 ** outage.failures))
            except Exception as exc:
                die(f"learner could not start: {type(exc).__name__}: {exc}")
        async for values in stream.take(500, within=0.5):
            try:  # river updates run off the event loop
                await asyncio.to_thread(_learn_batch, learn, values, outage)
            except StreamError as exc:
                die(f"learner failed: {exc}")
            except Exception as exc:  # never let Faust restart a half-updated learner silently
                die(f"unexpected {type(exc).__name__} in the learner: {exc}")


def _learn_batch(learn: LearnLoop, values: list[bytes], outage: Outage) -> None:
    """Learn a batch, then release if due; while Redis is down the learner keeps learning and
    releases once it is back (past redis.outage_limit_s the StoreError is fatal)."""
    with learn.lock:
        for v in values:
            learn.process(v)
        try:
            learn.maybe_release()
        except StoreError as exc:
            outage.failed(exc)
        else:
            outage.ok()
