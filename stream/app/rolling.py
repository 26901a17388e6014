"""Rolling flush: state written in cuts spread over time, offsets released when a cut is whole.

Without it every commit writes each user changed since the last commit, all at once: with
1,000 hot users that is ~2,000 messages (changelog + ``profiles.v1``) and ~1,000 Redis
writes in one burst every 2.5 s, and on this 2-core machine, shared with the broker, the
burst was the event-time lag's tail (p99 of the windows with a commit 89-189 ms, of the
others 24-56 ms; measured, see docs/benchmarks.md).

A **cut** fixes a point in the stream, with nothing processed in between:

1. the native reader's mark (every message handed over so far; their acknowledgements are
   held back, so Faust cannot commit past them: :meth:`NativeSource.release`);
2. the users changed since the last cut become pending (:meth:`UserStates.mark_commit`).

Then the pending users are written a few at a time, evenly over ``rolling_spread_s``,
with the event loop free between slices; a user written after the mark carries every
change up to the mark, and maybe later ones, which its per-partition watermarks make
harmless on a replay. When every pending user is written, the outputs are delivered
(:meth:`Worker.deliver`) and only then is the mark released: Faust's next commit takes the offsets up to it. A rebalance in between moves the
reader's epoch: the cut stops writing (its users may belong to another worker now) and
releases nothing; the next owner reads those messages again.

So committed offsets trail the stream by about one cut (~``rolling_interval_s`` +
``rolling_spread_s``), which is what a crash replays; every profile stays exact.
"""

from __future__ import annotations

import asyncio
import math
import time
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from stream.app.native import NativeSource
    from stream.app.worker import Worker


class RollingFlush:
    def __init__(self, worker: "Worker", reader: "NativeSource", interval_s: float, spread_s: float, *,
                 tick_s: float = 0.01, slice_budget_s: float = 0.005,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.w, self.reader, self.clock = worker, reader, clock
        self.interval_s, self.spread_s, self.tick_s, self.slice_budget_s = interval_s, spread_s, tick_s, slice_budget_s
        self.cuts = 0      # cuts released
        self.aborted = 0   # cuts a rebalance interrupted
        self._last: tuple[int, int] | None = None  # the last cut's mark (nothing new since: no cut)

    def install(self) -> None:
        self.reader.hold_acks = True
        self.w.rolling = self

    async def run(self) -> None:
        """Cut every ``interval_s`` while the reader reads (an app task)."""
        app = self.w.app
        next_cut = self.clock() + self.interval_s
        while not app.should_stop:
            await asyncio.sleep(max(0.0, next_cut - self.clock()))
            next_cut = self.clock() + self.interval_s
            if self.reader.partitions and self.reader.mark() != self._last:
                await self.cut()

    async def cut(self) -> bool:
        """One cut: mark, write its users paced over the spread, deliver, release."""
        users, reader, stats = self.w.users, self.reader, self.w.stage("profile")
        t0 = self.clock()
        mark = self._last = reader.mark()
        total = users.mark_commit()
        while users.pending:
            if reader.epoch != mark[0]:
                self.aborted += 1
                return False
            elapsed = self.clock() - t0
            due = math.ceil(total * min(1.0, elapsed / self.spread_s)) if self.spread_s > 0 else total
            behind = due - (total - len(users.pending))
            if behind > 0:
                self.w.emit_flushed(users.flush_pending(self.slice_budget_s, behind))
            await asyncio.sleep(self.tick_s)
        await self.w.deliver()
        if reader.epoch != mark[0]:
            self.aborted += 1
            return False
        reader.release(mark)
        self.cuts += 1
        stats.add_output("cut_users", total)
        stats.max_output("cut_ms_max", (self.clock() - t0) * 1000)
        return True
