"""Redis as a cache of the profile table: written behind, through outages and resets.

The table (and its changelog) is the truth; Redis serves reads. So a Redis outage must not
stop the pipeline: the newest profile of each changed user waits in :attr:`ProfileSync.pending`
(one entry per user, so the buffer is bounded by the users this worker owns), writes are
retried with a capped backoff, and only an outage longer than ``outage_limit_s`` is fatal
(the caller exits 70: an operator must look). When Redis answers again, every owned profile
is rewritten (the writes are version-checked: what Redis already holds costs a comparison),
because it may have come back empty.

A Redis that restarts empty between two writes is noticed as well: a **generation** key,
set once (``SET NX``) by whichever worker writes first, is read with every write pass; a
different (or missing, hence new) value means the data was lost, and the owned profiles
are rewritten.
"""

from __future__ import annotations

import logging
import time
from typing import Callable, Protocol, Sequence

from stream.errors import StoreError
from stream.log import event
from stream.monitor import StageStats
from stream.users import Flushed

log = logging.getLogger("stream.worker")


class Outage:
    """How long a dependency has been failing, logged without a flood, fatal past a limit."""

    def __init__(self, what: str, limit_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.what, self.limit_s, self.clock = what, limit_s, clock
        self.since: float | None = None
        self.failures = 0

    def failed(self, exc: Exception, **fields: object) -> float:
        """Count a failure; returns how long it has been down. Raises :class:`StoreError` past the limit."""
        now = self.clock()
        self.failures += 1
        if self.since is None:
            self.since = now
        down = now - self.since
        if self.failures == 1 or self.failures % 20 == 0:  # greppable, never a flood
            event(log, "redis_unavailable", logging.WARNING, user=self.what, down_s=round(down, 1),
                  limit_s=self.limit_s, error=str(exc), **fields)
        if down > self.limit_s:
            raise StoreError(f"Redis unavailable to the {self.what} for {down:.0f}s "
                             f"(redis.outage_limit_s={self.limit_s:g}): {exc}")
        return down

    def ok(self) -> bool:
        """Record a success; True if it ends an outage."""
        if self.since is None:
            return False
        event(log, "redis_recovered", user=self.what, outage_s=round(self.clock() - self.since, 1),
              failures=self.failures)
        self.since, self.failures = None, 0
        return True


class ProfileStore(Protocol):
    async def write(self, profiles: Sequence[Flushed]) -> tuple[int, float]: ...
    async def generation(self) -> str: ...


class ProfileSync:
    def __init__(self, pending: dict[str, Flushed], stats: StageStats, *, batch: int, outage_limit_s: float,
                 backoff_s: float = 0.2, backoff_max_s: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.pending, self.stats, self.batch = pending, stats, batch
        self.backoff_s, self.backoff_max_s = backoff_s, backoff_max_s
        self.outage = Outage("profile writer", outage_limit_s, clock)
        self.generation: str | None = None
        #: the owned profiles must all be rewritten (Redis was down, or lost its data)
        self.resync_needed = False

    @property
    def delay_s(self) -> float:
        """How long to wait before the next pass: 0 when healthy, else the backoff."""
        if self.outage.since is None:
            return 0.0
        return min(self.backoff_max_s, self.backoff_s * 2 ** min(self.outage.failures - 1, 16))

    def queue(self, f: Flushed) -> None:
        """The newest profile of a user wins (versions only grow)."""
        held = self.pending.get(f.user_id)
        if held is None or held.version <= f.version:
            self.pending[f.user_id] = f

    async def step(self, store: ProfileStore) -> bool:
        """Write everything pending; False if Redis failed (what was not written stays pending).

        Raises :class:`StoreError` once Redis has been failing for longer than the outage limit."""
        batch = list(self.pending.values())
        self.pending.clear()
        done = 0
        try:
            generation = await store.generation()
            if self.generation is not None and generation != self.generation:
                event(log, "redis_reset_detected", logging.WARNING, was=self.generation, now=generation)
                self.resync_needed = True
            self.generation = generation
            for start in range(0, len(batch), self.batch):
                written, seconds = await store.write(batch[start:start + self.batch])
                done = start + self.batch
                self.stats.add_output("redis_writes", written)
                self.stats.max_output("redis_write_ms_max", seconds * 1000)
        except StoreError as exc:
            for f in batch[done:]:
                self.queue(f)
            self.stats.gauges["redis_down_seconds"] = self.outage.failed(exc, pending=len(self.pending))
            return False
        finally:
            self.stats.gauges["redis_pending"] = float(len(self.pending))
        if self.outage.ok():
            self.resync_needed = True  # it may have restarted empty, or lost writes of a failed pass
        self.stats.gauges["redis_down_seconds"] = 0.0
        return True
