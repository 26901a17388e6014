"""The checkpoint: the one place that decides which input offsets may be committed.

State and outputs must never be behind the committed input (a crash replays from the
committed offsets, and the profiles' watermarks make the replay harmless only if the state
of everything before them was written). The clicks reader (:mod:`stream.app.native`) holds
back the acknowledgement of every message it hands to the stages, so Faust cannot commit
past a message until the checkpoint releases it. A **cut**, every ``interval_s``:

1. **mark**: the reader's mark, every message handed over so far (with the reader's epoch,
   which a rebalance moves);
2. **pending**: the users changed since the last cut become pending
   (:meth:`~stream.users.UserStates.mark_commit`);
3. **write**: each pending user is encoded once and written (table + changelog,
   ``profiles.v1``, the Redis queue) a few at a time, evenly over ``spread_s``, with the
   event loop free between slices (one burst of ~2,000 messages per commit was the lag's
   tail on this 2-core machine: docs/benchmarks.md). A user written after the mark carries
   every change up to it, and maybe later ones, which its watermarks make harmless;
4. **deliver**: wait until the broker has acknowledged every output produced so far;
5. **release**: the mark's acknowledgements go to Faust; its next periodic commit takes the
   offsets up to the mark.

A rebalance between the steps voids the cut: its users may be another worker's now, so it
writes no more and releases nothing; the next owner reads those messages again. So committed
offsets trail the stream by about one cut, which is what a crash replays.

When the worker stops, Faust's last commit runs a **final cut**: at the start of the commit
(:meth:`Checkpoint.commit_started`, from a Faust sensor) everything handed over is released
and every changed user becomes pending; right before Faust writes the offsets
(:meth:`Checkpoint.before_offsets`, from the producer flush Faust awaits there:
:func:`stream.app.compat.before_offsets`) all of them are written and delivered.

The ports are small: the state (:class:`~stream.users.UserStates`), ``emit`` (written users
to their outputs), ``deliver`` (wait for every output) and the reader (mark, release, epoch).
"""

from __future__ import annotations

import asyncio
import math
import time
from typing import Awaitable, Callable, Protocol

from stream.monitor import StageStats
from stream.users import Flushed

Mark = tuple[int, int]


class State(Protocol):
    pending: set[str]

    def mark_commit(self) -> int: ...
    def flush_pending(self, budget_s: float, limit: int | None = None) -> list[Flushed]: ...


class Reader(Protocol):
    epoch: int
    partitions: dict

    def mark(self) -> Mark: ...
    def release(self, mark: Mark) -> int: ...


class Checkpoint:
    def __init__(self, state: State, emit: Callable[[list[Flushed]], int], deliver: Callable[[], Awaitable[None]],
                 reader: Reader, stats: StageStats, *, interval_s: float, spread_s: float,
                 tick_s: float = 0.01, slice_budget_s: float = 0.005,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.state, self.emit, self.deliver, self.reader, self.stats = state, emit, deliver, reader, stats
        self.interval_s, self.spread_s, self.tick_s, self.slice_budget_s = interval_s, spread_s, tick_s, slice_budget_s
        self.clock = clock
        self.cuts = 0      # cuts released
        self.aborted = 0   # cuts a rebalance voided
        self._last: Mark | None = None  # the last cut's mark (nothing new since: no cut)
        self._final = False

    async def run(self, should_stop: Callable[[], bool]) -> None:
        """Cut every ``interval_s`` while the reader reads (an app task)."""
        next_cut = self.clock() + self.interval_s
        while not should_stop():
            await asyncio.sleep(max(0.0, next_cut - self.clock()))
            next_cut = self.clock() + self.interval_s
            if self.reader.partitions and self.reader.mark() != self._last:
                await self.cut()

    async def cut(self) -> bool:
        """One cut: mark, pending, write paced over the spread, deliver, release (see the module doc)."""
        state, reader = self.state, self.reader
        t0 = self.clock()
        mark = self._last = reader.mark()                                   # 1. mark
        total = state.mark_commit()                                         # 2. pending
        while state.pending:                                                # 3. write, paced
            if reader.epoch != mark[0]:
                self.aborted += 1
                return False
            elapsed = self.clock() - t0
            due = math.ceil(total * min(1.0, elapsed / self.spread_s)) if self.spread_s > 0 else total
            behind = due - (total - len(state.pending))
            if behind > 0:
                self.emit(state.flush_pending(self.slice_budget_s, behind))
            await asyncio.sleep(self.tick_s)
        await self.deliver()                                                # 4. deliver
        if reader.epoch != mark[0]:
            self.aborted += 1
            return False
        reader.release(mark)                                                # 5. release
        self.cuts += 1
        self.stats.add_output("cut_users", total)
        self.stats.max_output("cut_ms_max", (self.clock() - t0) * 1000)
        return True

    def commit_started(self, stopping: bool) -> None:
        """At the start of each Faust commit. A periodic one has nothing to do (it commits what
        the last cut released); the worker's last one runs the final cut (steps 1, 2, 5 now)."""
        if not stopping:
            return
        self.reader.release(self.reader.mark())
        self.state.mark_commit()
        self._final = True

    async def before_offsets(self) -> None:
        """Right before Faust writes the offsets of the final cut: its steps 3 and 4, in slices
        with the loop free between them."""
        if not self._final:
            return
        self._final = False
        t0 = time.perf_counter()
        while self.state.pending:
            self.emit(self.state.flush_pending(self.slice_budget_s))
            await asyncio.sleep(0)
        await self.deliver()
        self.stats.max_output("commit_wait_ms_max", (time.perf_counter() - t0) * 1000)
