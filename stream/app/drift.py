"""Faust wiring of the drift stage: one agent per monitored topic, a timer that closes
windows, and control.v1 for `stream drift reset-reference`.

The drift worker runs alone (``stream worker --stages drift``, its own consumer group):
it reads every partition of the monitored topics, so its windows see the whole stream.
"""

from __future__ import annotations

import logging
import time

import faust

from stream.app.worker import Worker, decoded, die
from stream.errors import StreamError
from stream.log import event
from stream.stages.drift import SOURCES, DriftStage

log = logging.getLogger("stream.drift")


def wire_drift(w: Worker, drift: DriftStage, topics: dict[str, faust.TopicT], control: faust.TopicT) -> None:
    app = w.app
    started_ms = int(time.time() * 1000)

    def agent_for(name: str, topic: faust.TopicT) -> None:
        async def watch(stream: faust.StreamT) -> None:
            handle = drift.handle
            async for ev in stream.events():
                m = ev.message
                try:
                    handle(name, m.value, dict(m.headers) if m.headers else None, m.partition)
                except StreamError as exc:
                    die(f"drift failed on {name}: {exc}")
                except Exception as exc:  # a bug: stop loudly rather than watch nothing
                    die(f"unexpected {type(exc).__name__} in the drift agent of {name}: {exc}")
        watch.__name__ = f"drift_{name.replace('.', '_')}"
        app.agent(topic, name=watch.__name__)(watch)

    for name in SOURCES:
        agent_for(name, topics[name])

    @app.on_partitions_assigned.connect
    async def on_assigned(app: faust.App, assigned: set, **kwargs: object) -> None:
        event(log, "partitions_assigned", worker=w.worker_id, stage="drift",
              partitions=len([tp for tp in assigned if tp.topic in SOURCES]))

    @app.timer(1.0)
    async def close_windows() -> None:
        try:
            drift.close()
        except StreamError as exc:
            die(f"drift could not publish: {exc}")

    @app.agent(control, name="drift_control")
    async def commands(stream: faust.StreamT) -> None:
        async for cmd in decoded(w, stream, "ControlCommand"):
            if cmd["action"] != "PIN_REFERENCE" or cmd["issued_at"] < started_ms:
                continue  # other commands are the rollout's; old ones were applied by an earlier worker
            stages = [s for s in cmd["args"].get("stages", "").split(",") if s] or None
            unknown = set(stages or ()) - set(drift.monitors)
            if unknown:
                event(log, "control_refused", logging.WARNING, command=cmd["command_id"],
                      reason=f"unknown drift stage(s) {','.join(sorted(unknown))}")
                continue
            drift.reset_reference(stages)
