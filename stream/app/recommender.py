"""Faust wiring of the recommender: window closing, hot swap of model releases, the learner agent."""

from __future__ import annotations

import asyncio
import logging

import faust

from stream.adapters.registry import ModelIntegrityError
from stream.app.worker import Worker, die
from stream.core.model import export
from stream.errors import StoreError, StreamError
from stream.log import event
from stream.stages.learn import LearnLoop

log = logging.getLogger("stream.worker")


def wire_scoring(w: Worker) -> None:
    app, m = w.app, w.settings.model
    refused: set[int] = set()

    @app.timer(1.0)
    async def close_windows() -> None:
        w.feedback.close_windows()

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


def wire_learning(w: Worker, topic: faust.TopicT) -> None:
    app, learn = w.app, w.learn

    @app.agent(topic, name="learn")
    async def learner(stream: faust.StreamT) -> None:
        try:
            await asyncio.to_thread(learn.start)
        except Exception as exc:
            die(f"learner could not start: {type(exc).__name__}: {exc}")
        async for values in stream.take(500, within=0.5):
            try:  # river updates run off the event loop
                await asyncio.to_thread(_learn_batch, learn, values)
            except StreamError as exc:
                die(f"learner failed: {exc}")
            except Exception as exc:  # never let Faust restart a half-updated learner silently
                die(f"unexpected {type(exc).__name__} in the learner: {exc}")


def _learn_batch(learn: LearnLoop, values: list[bytes]) -> None:
    for v in values:
        learn.process(v)
    learn.maybe_release()
