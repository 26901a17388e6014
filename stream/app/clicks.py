"""Faust wiring of the fused stages on ``clicks.v1``: the native reader handing messages to the
stage runner, the checkpoint (:mod:`stream.app.checkpoint`) and its two Faust hooks, the
Redis writer, the rebalance handlers."""

from __future__ import annotations

import asyncio
import logging
from typing import Callable

import faust
from faust.types import Message

from stream.adapters.kafka import topic_id
from stream.adapters.redis_store import ProfileWriter
from stream.app import compat
from stream.app.checkpoint import Checkpoint
from stream.app.direct import DirectTopic
from stream.app.health import down_for
from stream.app.native import NativeSource, NativeSourceError
from stream.app.redis_sync import ProfileSync
from stream.app.worker import Worker, die
from stream.errors import StoreError, StreamError
from stream.log import event
from stream.runner import NO_HEADERS, FatalStageError, RawMessage
from stream.topology import Topic
from stream.users import Flushed

log = logging.getLogger("stream.worker")


class CommitStarted(faust.Sensor):
    """Tells the checkpoint when Faust starts a commit, and whether it is the worker's last."""

    def __init__(self, checkpoint: Checkpoint, app: faust.App) -> None:
        super().__init__()
        self.checkpoint, self.app = checkpoint, app

    def on_commit_initiated(self, consumer: object) -> None:
        self.checkpoint.commit_started(stopping=bool(getattr(consumer, "should_stop", False) or self.app.should_stop))


def wire_clicks(w: Worker, source: Topic, table: faust.Table) -> None:
    """The fused clicks stages: read natively, checkpointed in cuts, written through to Redis."""
    app, settings = w.app, w.settings
    w.table = table
    process = w.runner.process

    def process_raw(raw: RawMessage) -> None:
        try:
            process(raw)
        except FatalStageError as exc:
            die(str(exc))
        except Exception as exc:  # the runner classifies; anything escaping it is a bug
            die(f"unexpected {type(exc).__name__} in the clicks stage: {exc}")

    def deliver(m: Message) -> None:
        headers = dict(m.headers) if m.headers else NO_HEADERS
        process_raw(RawMessage(m.topic, m.partition, m.offset, m.key, m.value, headers, int((m.timestamp or 0) * 1000)))

    # Faust stays subscribed (it never fetches the topic): its group assigns the partitions,
    # and the table's with them
    DirectTopic(app, source.name, source.partitions, deliver)
    _wire_native(w, source, process_raw)

    @app.task
    async def redis_writer() -> None:
        """Redis written behind the table (stream.app.redis_sync): an outage shorter than
        redis.outage_limit_s only delays it."""
        # the clicks topic's id: Redis must not keep a lost broker's profiles above the new ones
        incarnation = await asyncio.to_thread(topic_id, settings.kafka.bootstrap_servers, source.name)
        event(log, "clicks_incarnation", logging.INFO if incarnation else logging.WARNING, worker=w.worker_id,
              topic=source.name, id=incarnation or "unknown (profile versions only: a broker that lost its data "
                                                   "would leave older profiles in Redis)")
        writer = ProfileWriter(settings.redis.url, settings.redis.key_prefix, incarnation=incarnation or "")
        sync = ProfileSync(w.redis_pending, w.stage("profile"), batch=settings.profile.redis_batch,
                           outage_limit_s=settings.redis.outage_limit_s)
        w.health.add("redis", lambda: down_for(sync.outage.since))
        interval = settings.profile.redis_flush_interval_s
        try:
            while not app.should_stop:
                await asyncio.sleep(sync.delay_s or interval)
                if w.resync or sync.resync_needed:
                    sync.resync_needed = False
                    _mark_all_changed(w, table)
                try:
                    await sync.step(writer)
                except StoreError as exc:
                    die(str(exc))
        finally:
            await writer.close()

    @app.on_partitions_revoked.connect
    async def on_revoked(app: faust.App, revoked: set, **kwargs: object) -> None:
        """Before the partitions go to another worker, every state write of ours is on the broker:
        one landing after the next owner's writes would roll a profile back."""
        try:
            await w.out.wait_delivered(w.out.last_seq)
        except StreamError as exc:
            die(f"outputs not delivered before a rebalance: {exc}")

    @app.on_partitions_assigned.connect
    async def on_assigned(app: faust.App, assigned: set, **kwargs: object) -> None:
        w.assigned = {tp.partition for tp in assigned if tp.topic == source.name}
        w.users.forget_partitions(lambda p: p in w.assigned)
        event(log, "partitions_assigned", worker=w.worker_id, partitions=sorted(w.assigned))

    @app.on_rebalance_complete.connect
    async def on_recovered(app: faust.App, **kwargs: object) -> None:
        """Faust has restored the table for this assignment: make Redis current for every user we own."""
        w.resync = True
        event(log, "recovered", worker=w.worker_id, partitions=sorted(w.assigned))


def _wire_native(w: Worker, source: Topic, process_raw: Callable[[RawMessage], None]) -> None:
    f = w.settings.faust
    reader = w.native = NativeSource(w.app, source.name, process_raw, w.settings.kafka.bootstrap_servers,
                                     fetch_wait_ms=f.native_fetch_wait_ms, idle_s=f.native_idle_ms / 1000)
    reader.install()
    p = w.settings.profile
    reader.hold_acks = True  # released by the checkpoint once a cut's state is written
    checkpoint = w.checkpoint = Checkpoint(w.users, w.emit_flushed, w.deliver, reader, w.stage("profile"),
                                           interval_s=p.cut_interval_s, spread_s=p.cut_spread_s,
                                           slice_budget_s=p.flush_slice_budget_ms / 1000)
    w.app.sensors.add(CommitStarted(checkpoint, w.app))

    async def before_offsets() -> None:
        try:
            await checkpoint.before_offsets()
        except StreamError as exc:
            die(f"outputs not delivered before the final commit: {exc}")

    @w.app.task
    async def hook_commits() -> None:
        compat.before_offsets(w.app, before_offsets)

    @w.app.task
    async def cuts() -> None:
        try:
            await checkpoint.run(lambda: w.app.should_stop)
        except StreamError as exc:
            die(f"checkpoint failed: {exc}")
        except Exception as exc:  # a bug here would otherwise only crash the app's task, quietly
            die(f"unexpected {type(exc).__name__} in the checkpoint: {exc}")

    @w.app.task
    async def native_reader() -> None:
        try:
            await reader.run()
        except NativeSourceError as exc:
            die(str(exc))
        except Exception as exc:  # a bug here would otherwise only crash the app's task, quietly
            die(f"unexpected {type(exc).__name__} in the clicks reader: {exc}")


def _mark_all_changed(w: Worker, table: faust.Table) -> None:
    """Queue every owned user's profile for Redis (version-checked, so cheap when Redis is current)."""
    w.resync = False
    n = 0
    for key, raw in list(table.data.items()):
        profile, used = w.registry.decode_prefix("UserProfile", raw)
        if profile["source_partition"] in w.assigned:
            user = profile["user_id"]
            if user not in w.redis_pending:
                w.redis_pending[user] = Flushed(user, profile["source_partition"], profile["version"], raw[:used])
                n += 1
    event(log, "redis_resync", worker=w.worker_id, profiles=n)
