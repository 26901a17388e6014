"""Redis written behind the table: an outage delays writes, loses none, and ends in a rewrite."""

from __future__ import annotations

import asyncio

import pytest

from stream.app.redis_sync import ProfileSync
from stream.errors import StoreError
from stream.monitor import StageStats
from stream.users import Flushed


class Store:
    """A Redis stand-in for the pure logic: fails while ``down``; its data and generation token."""

    def __init__(self) -> None:
        self.down = False
        self.data: dict[str, int] = {}
        self.token = "g1"
        self.calls = 0

    async def generation(self) -> str:
        if self.down:
            raise StoreError("connection refused")
        return self.token

    async def write(self, profiles):  # noqa: ANN001, ANN201 - the ProfileWriter signature
        self.calls += 1
        if self.down:
            raise StoreError("connection refused")
        newer = [f for f in profiles if self.data.get(f.user_id, -1) < f.version]
        for f in newer:
            self.data[f.user_id] = f.version
        return len(newer), 0.001


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def make(limit: float = 300.0, batch: int = 2):
    clock = Clock()
    sync = ProfileSync({}, StageStats("profile"), batch=batch, outage_limit_s=limit, clock=clock)
    return sync, Store(), clock


def flushed(user: str, version: int) -> Flushed:
    return Flushed(user, 0, version, b"p%d" % version)


def test_an_outage_keeps_the_newest_profile_per_user_and_writes_it_when_redis_returns():
    sync, store, clock = make()
    for v in (1, 2):
        sync.queue(flushed("a", v))
    sync.queue(flushed("b", 1))
    store.down = True
    assert asyncio.run(sync.step(store)) is False
    assert {u: f.version for u, f in sync.pending.items()} == {"a": 2, "b": 1}  # nothing lost
    assert sync.delay_s == pytest.approx(0.2)
    clock.t = 10.0
    sync.queue(flushed("a", 3))  # changed again meanwhile: the newest wins
    assert asyncio.run(sync.step(store)) is False and sync.pending["a"].version == 3
    assert sync.delay_s == pytest.approx(0.4) and sync.stats.gauges["redis_down_seconds"] == 10.0
    store.down = False
    assert asyncio.run(sync.step(store)) is True
    assert store.data == {"a": 3, "b": 1} and not sync.pending and sync.delay_s == 0.0
    assert sync.resync_needed  # Redis may have come back empty: rewrite every owned profile


def test_a_failure_mid_batch_keeps_only_the_unwritten_chunks_pending():
    sync, store, _ = make(batch=1)
    for u in "abc":
        sync.queue(flushed(u, 1))
    real_write = store.write

    async def fail_on_second(profiles):  # noqa: ANN001, ANN202
        if store.calls == 1:
            store.calls += 1
            raise StoreError("timeout")
        return await real_write(profiles)
    store.write = fail_on_second
    assert asyncio.run(sync.step(store)) is False
    assert store.data == {"a": 1} and sorted(sync.pending) == ["b", "c"]


def test_an_outage_longer_than_the_limit_is_fatal_with_the_reason():
    sync, store, clock = make(limit=30.0)
    sync.queue(flushed("a", 1))
    store.down = True
    assert asyncio.run(sync.step(store)) is False
    clock.t = 31.0
    with pytest.raises(StoreError, match=r"Redis unavailable to the profile writer for 31s \(redis.outage_limit_s=30\)"):
        asyncio.run(sync.step(store))


def test_a_redis_that_lost_its_data_between_writes_is_noticed_by_its_generation():
    sync, store, _ = make()
    sync.queue(flushed("a", 1))
    assert asyncio.run(sync.step(store)) and not sync.resync_needed
    store.data, store.token = {}, "g2"  # restarted empty; another worker set a new token
    assert asyncio.run(sync.step(store)) and sync.resync_needed


def test_health_names_every_failing_check_and_is_ready_when_none_fails():
    from stream.app.health import Health, down_for
    h, state = Health(), {"since": None}
    h.add("redis", lambda: down_for(state["since"], clock=lambda: 12.0))
    h.add("lag", lambda: None)
    assert h.reasons() == []
    state["since"] = 2.0
    assert h.reasons() == ["redis: unavailable for 10s"]


def test_the_broker_watch_stops_the_worker_with_the_remedy_past_the_limit_only():
    from stream.app.health import BrokerWatch

    class Out:
        bootstrap, broker_down_since, answers = "127.0.0.1:9", None, True

        def broker_answers(self, timeout: float = 2.0) -> bool:
            if not self.answers and self.broker_down_since is None:
                self.broker_down_since = now[0]
            return self.answers
    now, fatal, out = [0.0], [], Out()
    watch = BrokerWatch(out, 30.0, fatal.append, clock=lambda: now[0])
    assert watch.check() and not fatal
    out.answers = False
    now[0] = 10.0
    assert not watch.check() and not fatal  # down 0 s
    now[0] = 41.0
    assert not watch.check()
    assert fatal == ["broker 127.0.0.1:9 unreachable for 31s (kafka.outage_limit_s=30); on the embedded stack: "
                     "`stream up && stream topics create`, then restart every worker; elsewhere: bring the "
                     "brokers back, then restart the workers"]
