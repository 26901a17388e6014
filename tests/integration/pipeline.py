"""Helpers for pipeline integration tests: a fresh stack per scenario and the reference profiles."""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from stream.adapters.kafka import ensure_topology, producer, read
from stream.adapters.redis_store import read_profiles
from stream.config import Settings
from stream.core.profile import Position, ProfileConfig, fold
from stream.partitioning import partition_for
from stream.serde import SchemaRegistry
from stream.stack import Stack
from stream.loadgen import produce_workload
from stream.topology import Topology
from stream.workload import Workload

WATERMARK = ("source_offset", "source_index")
CLICKS = Topology.load().topic("clicks.v1")


@contextmanager
def fresh_stack(tmp: Path) -> Iterator[dict[str, str]]:
    """A new broker + Redis for one scenario (so topics start empty); always stopped."""
    settings = Settings.load(env={"STREAM_STACK_STATE_DIR": str(tmp / "state")})
    st = Stack(settings)
    try:
        procs, _ = st.up()
        env = {"STREAM_KAFKA_BOOTSTRAP_SERVERS": procs["broker"].endpoint,
               "STREAM_REDIS_URL": procs["redis"].endpoint,
               "STREAM_STACK_STATE_DIR": str(tmp / "state"),
               "STREAM_MONITOR_INTERVAL_S": "1",
               "STREAM_PROFILE_REDIS_FLUSH_INTERVAL_S": "0.1"}
        ensure_topology(procs["broker"].endpoint, Topology.load())
        yield env
    finally:
        st.down()


def reference_profiles(events: list[dict], partitions: int = 4, cfg: ProfileConfig = ProfileConfig()) -> dict:
    """Profiles computed once, directly from the valid input, in each user's order."""
    out: dict[str, dict] = {}
    for i, ev in enumerate(events):
        user = ev["user_id"]
        out[user] = fold(out.get(user), dict(ev), Position(partition_for(user, partitions), i, 0), cfg)
    return out


def comparable(profile: dict) -> dict:
    """A profile without the source offsets (they depend on how the input was cut into messages)."""
    return {k: v for k, v in profile.items() if k not in WATERMARK}


def redis_profiles(url: str, users: list[str], prefix: str = "stream:") -> dict[str, dict]:
    return read_profiles(url, users, SchemaRegistry.default(), prefix)


def wait_for_profiles(url: str, expected: dict[str, dict], timeout: float) -> dict[str, dict]:
    """Poll Redis until every user has the expected version (or the time is up)."""
    deadline = time.monotonic() + timeout
    users = sorted(expected)
    got: dict[str, dict] = {}
    while time.monotonic() < deadline:
        got = redis_profiles(url, users)
        if all(u in got and got[u]["version"] >= expected[u]["version"] for u in users):
            return got
        time.sleep(0.25)
    return got


def read_all(bootstrap: str, topic: str, idle: float = 2.0, limit_s: float = 60.0):
    return list(read(bootstrap, topic, idle_timeout=idle, deadline=time.monotonic() + limit_s))


class Feeder:
    """Produces a workload at ``rate`` events/s from a thread until stopped (or ``limit`` events);
    keeps every valid event it sent, for the reference profiles."""

    def __init__(self, bootstrap: str, workload: Workload, rate: float, *, chunk: int = 1_000,
                 batch_size: int = 50, limit: int = 600_000) -> None:
        self.bootstrap, self.workload, self.rate = bootstrap, workload, rate
        self.chunk, self.batch_size, self.limit = chunk, batch_size, limit
        self.produced: list[dict] = []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        p = producer(self.bootstrap)
        while not self.stopping.is_set() and len(self.produced) < self.limit:
            self.produced.extend(produce_workload(p, CLICKS, self.workload, events=self.chunk,
                                                  batch_size=self.batch_size, target_rate=self.rate,
                                                  keep=True).produced)

    def start(self) -> "Feeder":
        self.thread.start()
        return self

    def stop(self, timeout: float = 60.0) -> list[dict]:
        self.stopping.set()
        if self.thread.is_alive():
            self.thread.join(timeout)
        assert not self.thread.is_alive(), "the feeder did not stop"
        return self.produced


def assert_exact_in_redis(redis_url: str, produced: list[dict], timeout: float, context: str = "") -> None:
    """Every user's profile in Redis equals the one computed from the input (within ``timeout``)."""
    reference = reference_profiles(produced)
    got = wait_for_profiles(redis_url, reference, timeout=timeout)
    missing = [u for u in reference if u not in got]
    assert not missing, (len(missing), missing[:5], context)
    wrong = [u for u in reference if comparable(got[u]) != comparable(reference[u])]
    assert not wrong, (len(wrong), comparable(got[wrong[0]]), comparable(reference[wrong[0]]), context)
