"""The rolling flush's own logic: what a cut writes, how it spreads the writes, when it
releases offsets, what a rebalance does to it, and the worker's commit hook around it. The
cuts in a real worker on the real broker (kill -9, a joining worker: every profile exact)
are covered by the pipeline integration tests."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from stream.app.rolling import RollingFlush
from stream.app.worker import Worker
from stream.monitor import StageStats
from stream.users import UserStates
from tests.unit.test_users_and_stages import REG, DictTable

PROFILE = {"user_id": "", "version": 1, "first_seen": 0, "last_seen": 0, "counts": {}, "affinity": {},
           "affinity_at": 0, "sessions": 0, "session_start": 0, "session_events": 0, "session_total_ms": 0,
           "last_items": [], "spend": 0.0, "source_partition": 0, "source_offset": 0, "source_index": 0,
           "consumed": b""}


class Reader:
    """What the rolling flush uses of the native reader."""

    def __init__(self) -> None:
        self.partitions = {0: "tp"}
        self.epoch = 0
        self.handed = 0
        self.released: list[tuple[int, int]] = []

    def mark(self) -> tuple[int, int]:
        return self.epoch, self.handed

    def release(self, mark: tuple[int, int]) -> int:
        self.released.append(mark)
        return mark[1]


class FakeWorker:
    def __init__(self, users: UserStates, log: list) -> None:
        self.users, self.log = users, log
        self.app = SimpleNamespace(should_stop=False)
        self.stats = StageStats("profile")
        self.rolling = None
        self.emitted: list[list[str]] = []

    async def deliver(self) -> None:
        self.log.append("delivered")

    def stage(self, name: str) -> StageStats:
        return self.stats

    def emit_flushed(self, flushed: list) -> int:
        self.emitted.append([f.user_id for f in flushed])
        self.log.append(("written", len(flushed)))
        return len(flushed)


class Clock:
    """Moves on by ``step`` every time it is read: a cut's pacing without real waiting."""

    def __init__(self, step: float) -> None:
        self.t, self.step = 0.0, step

    def __call__(self) -> float:
        self.t += self.step
        return self.t


def setup(n_users: int = 20, spread_s: float = 0.1):
    users = UserStates(DictTable(), REG)
    for i in range(n_users):
        change(users, f"u{i}")
    log: list = []
    w, reader = FakeWorker(users, log), Reader()
    rolling = RollingFlush(w, reader, interval_s=1.0, spread_s=spread_s, tick_s=0.0, clock=Clock(0.01))
    rolling.install()
    return users, w, reader, rolling, log


def change(users: UserStates, user_id: str) -> None:
    st = users.get(user_id, 0)
    st.profile = {**PROFILE, "user_id": user_id, "counts": {}, "affinity": {}, "last_items": []}
    users.changed(user_id)


def test_a_cut_writes_its_users_spread_out_then_delivers_then_releases_its_mark():
    users, w, reader, rolling, log = setup()
    reader.handed = 7
    assert asyncio.run(rolling.cut())
    written = [u for batch in w.emitted for u in batch]
    assert sorted(written) == sorted(f"u{i}" for i in range(20))  # each once
    assert len(w.emitted) >= 5 and max(len(b) for b in w.emitted) <= 5  # spread: ~2 per 10 ms over 100 ms
    assert log[-1] == "delivered" and reader.released == [(0, 7)]  # released only after delivery
    assert not users.pending and not users.dirty
    assert rolling.cuts == 1 and w.stats.outputs["cut_users"] == 20


def test_users_changed_after_the_mark_wait_for_the_next_cut():
    users, w, reader, rolling, log = setup(n_users=3, spread_s=0.0)

    async def cut_then_change():
        task = asyncio.ensure_future(rolling.cut())
        await asyncio.sleep(0)  # the cut has taken its mark and written everything due
        change(users, "late")
        await task

    asyncio.run(cut_then_change())
    assert sorted(u for b in w.emitted for u in b) == ["u0", "u1", "u2"]
    assert "late" in users.dirty and "late" not in users.pending


def test_a_rebalance_during_a_cut_stops_it_and_releases_nothing():
    users, w, reader, rolling, log = setup(n_users=50, spread_s=1.0)

    async def cut_with_rebalance():
        task = asyncio.ensure_future(rolling.cut())
        for _ in range(3):
            await asyncio.sleep(0)
        reader.epoch += 1  # what NativeSource does when a rebalance stops it
        return await task

    assert asyncio.run(cut_with_rebalance()) is False
    assert reader.released == [] and "delivered" not in log
    assert users.pending  # the rest is left to the next cut (the partitions may be another worker's)
    assert rolling.aborted == 1


def test_a_cut_with_no_changed_user_still_waits_for_the_other_outputs():
    users, w, reader, rolling, log = setup(n_users=0)
    reader.handed = 4  # e.g. every message was a duplicate or a dead letter
    assert asyncio.run(rolling.cut())
    assert log == ["delivered"] and reader.released == [(0, 4)]


def test_commit_hook_with_rolling_cuts_waits_for_them_except_when_the_worker_stops():
    users, w, reader, rolling, log = setup(n_users=2)
    released = []
    native = SimpleNamespace(release_all=lambda: released.append(True))
    worker = Worker(settings=None, worker_id="w", app=None, out=None, users=users, runner=None, stats=[],
                    monitor_topics={}, registry=REG, native=native, rolling=rolling)
    worker.commit_flush()
    assert not worker.commit_pending and not users.pending and released == []  # periodic: the cuts release
    worker.commit_flush(stopping=True)
    assert worker.commit_pending and users.pending == {"u0", "u1"} and released == [True]
