"""The checkpoint's own logic: what a cut writes, how it spreads the writes, when it releases
offsets, what a rebalance does to it, and the final cut of a stopping worker. The cuts in a
real worker on the real broker (kill -9, churn, a joining worker: every profile exact) are
covered by the pipeline and fault integration tests."""

from __future__ import annotations

import asyncio
from stream.app.checkpoint import Checkpoint
from stream.monitor import StageStats
from stream.users import UserStates
from tests.unit.test_users_and_stages import REG, DictTable

PROFILE = {"user_id": "", "version": 1, "first_seen": 0, "last_seen": 0, "counts": {}, "affinity": {},
           "affinity_at": 0, "sessions": 0, "session_start": 0, "session_events": 0, "session_total_ms": 0,
           "last_items": [], "spend": 0.0, "source_partition": 0, "source_offset": 0, "source_index": 0,
           "consumed": b""}


class Reader:
    """What the checkpoint uses of the native reader."""

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


class Outputs:
    """The checkpoint's output ports: what it wrote, and when it waited for delivery."""

    def __init__(self, log: list) -> None:
        self.log = log
        self.emitted: list[list[str]] = []

    def emit(self, flushed: list) -> int:
        self.emitted.append([f.user_id for f in flushed])
        self.log.append(("written", len(flushed)))
        return len(flushed)

    async def deliver(self) -> None:
        self.log.append("delivered")


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
    w, reader = Outputs(log), Reader()
    checkpoint = Checkpoint(users, w.emit, w.deliver, reader, StageStats("profile"), interval_s=1.0, spread_s=spread_s,
                         tick_s=0.0, clock=Clock(0.01))
    return users, w, reader, checkpoint, log


def change(users: UserStates, user_id: str) -> None:
    st = users.get(user_id, 0)
    st.profile = {**PROFILE, "user_id": user_id, "counts": {}, "affinity": {}, "last_items": []}
    users.changed(user_id)


def test_a_cut_writes_its_users_spread_out_then_delivers_then_releases_its_mark():
    users, w, reader, checkpoint, log = setup()
    reader.handed = 7
    assert asyncio.run(checkpoint.cut())
    written = [u for batch in w.emitted for u in batch]
    assert sorted(written) == sorted(f"u{i}" for i in range(20))  # each once
    assert len(w.emitted) >= 5 and max(len(b) for b in w.emitted) <= 5  # spread: ~2 per 10 ms over 100 ms
    assert log[-1] == "delivered" and reader.released == [(0, 7)]  # released only after delivery
    assert not users.pending and not users.dirty
    assert checkpoint.cuts == 1 and checkpoint.stats.outputs["cut_users"] == 20


def test_users_changed_after_the_mark_wait_for_the_next_cut():
    users, w, reader, checkpoint, log = setup(n_users=3, spread_s=0.0)

    async def cut_then_change():
        task = asyncio.ensure_future(checkpoint.cut())
        await asyncio.sleep(0)  # the cut has taken its mark and written everything due
        change(users, "late")
        await task

    asyncio.run(cut_then_change())
    assert sorted(u for b in w.emitted for u in b) == ["u0", "u1", "u2"]
    assert "late" in users.dirty and "late" not in users.pending


def test_a_rebalance_during_a_cut_stops_it_and_releases_nothing():
    users, w, reader, checkpoint, log = setup(n_users=50, spread_s=1.0)

    async def cut_with_rebalance():
        task = asyncio.ensure_future(checkpoint.cut())
        for _ in range(3):
            await asyncio.sleep(0)
        reader.epoch += 1  # what NativeSource does when a rebalance stops it
        return await task

    assert asyncio.run(cut_with_rebalance()) is False
    assert reader.released == [] and "delivered" not in log
    assert users.pending  # the rest is left to the next cut (the partitions may be another worker's)
    assert checkpoint.aborted == 1


def test_a_cut_with_no_changed_user_still_waits_for_the_other_outputs():
    users, w, reader, checkpoint, log = setup(n_users=0)
    reader.handed = 4  # e.g. every message was a duplicate or a dead letter
    assert asyncio.run(checkpoint.cut())
    assert log == ["delivered"] and reader.released == [(0, 4)]


def test_a_periodic_commit_leaves_the_cuts_alone_and_the_last_one_writes_and_releases_everything():
    users, w, reader, checkpoint, log = setup(n_users=2)
    reader.handed = 9
    checkpoint.commit_started(stopping=False)
    asyncio.run(checkpoint.before_offsets())
    assert not users.pending and reader.released == [] and log == []  # periodic: the cuts release
    checkpoint.commit_started(stopping=True)  # the worker's last commit
    assert users.pending == {"u0", "u1"} and reader.released == [(0, 9)]
    asyncio.run(checkpoint.before_offsets())  # right before Faust writes the offsets
    assert sorted(u for b in w.emitted for u in b) == ["u0", "u1"] and log[-1] == "delivered"
    assert not users.pending
