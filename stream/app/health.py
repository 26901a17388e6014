"""Is this worker ready: the answer of ``/ready`` and of the ``stream_ready`` gauge.

A worker is ready when nothing below holds: it is rebalancing or recovering its table, its
broker does not answer, Redis does not answer, or it is further behind than
``monitor.ready_max_lag`` messages. Each check returns why not (a short phrase) or None;
``/ready`` answers 200 with ``{"ready": true}`` or 503 with the reasons, so a load balancer,
a compose healthcheck or an operator sees the same thing.

A broker that stays unreachable for ``kafka.outage_limit_s`` stops the worker (exit 70)
with one line that says what to do: after a broker loss the worker's state belongs to
topics that no longer exist.
"""

from __future__ import annotations

import threading
import time
from typing import Callable, Protocol

Check = Callable[[], "str | None"]

#: what to do when the broker is gone, on the embedded stack (said by the fatal line)
BROKER_REMEDY = ("on the embedded stack: `stream up && stream topics create`, then restart every worker; "
                 "elsewhere: bring the brokers back, then restart the workers")


class Health:
    def __init__(self) -> None:
        self.checks: dict[str, Check] = {}

    def add(self, name: str, check: Check) -> None:
        self.checks[name] = check

    def reasons(self) -> list[str]:
        """Why the worker is not ready (empty when it is)."""
        out = []
        for name, check in self.checks.items():
            why = check()
            if why:
                out.append(f"{name}: {why}")
        return out


def down_for(since: float | None, clock: Callable[[], float] = time.monotonic) -> str | None:
    """A check's phrase for something failing since ``since`` (None: not failing)."""
    return None if since is None else f"unavailable for {clock() - since:.0f}s"


class Probed(Protocol):
    bootstrap: str
    broker_down_since: float | None

    def broker_answers(self, timeout: float = 2.0) -> bool: ...


class BrokerWatch(threading.Thread):
    """Probes the broker every ``every_s`` (every second while it fails) from a thread of its
    own, so it works while Faust is still joining its group or its loop is stuck; past
    ``limit_s`` it calls ``on_fatal(reason)``, which is expected to stop the process."""

    def __init__(self, out: Probed, limit_s: float, on_fatal: Callable[[str], None], *, every_s: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(name="broker-watch", daemon=True)
        self.out, self.limit_s, self.on_fatal, self.every_s, self.clock = out, limit_s, on_fatal, every_s, clock
        self.stopped = threading.Event()

    def check(self) -> bool:
        """One probe; False when the broker does not answer (and on_fatal was called past the limit)."""
        if self.out.broker_answers(2.0):
            return True
        down = self.clock() - self.out.broker_down_since
        if down > self.limit_s:
            self.on_fatal(f"broker {self.out.bootstrap} unreachable for {down:.0f}s "
                          f"(kafka.outage_limit_s={self.limit_s:g}); {BROKER_REMEDY}")
        return False

    def run(self) -> None:
        while not self.stopped.wait(self.every_s if self.out.broker_down_since is None else 1.0):
            self.check()
