"""The broker gone: a worker says so in one line with the remedy and exits 70 in bounded time
(issue on faults: a worker cut off kept answering up=1 and logged ~100 lines/s); SIGTERM under
load stops a worker within 10 s."""

from __future__ import annotations

import threading
import time

import pytest

from stream.adapters.kafka import producer
from stream.config import Settings
from stream.loadgen import produce_workload
from stream.stack import Stack, stop_pid, wait_until
from stream.topology import Topology
from stream.workload import Workload
from tests.integration.pipeline import fresh_stack
from tests.integration.workers import WorkerProcess

pytestmark = pytest.mark.integration
CLICKS = Topology.load().topic("clicks.v1")
LIMIT_S = 10


def test_a_worker_whose_broker_is_gone_exits_70_with_the_remedy_in_bounded_time(tmp_path):
    with fresh_stack(tmp_path) as env:
        w = WorkerProcess({**env, "STREAM_KAFKA_OUTAGE_LIMIT_S": str(LIMIT_S)}, tmp_path, "w")
        try:
            w.wait_ready()
            assert wait_until(lambda: (w.ready() or (0,))[0] == 200, 30, 0.25), w.ready()
            broker = Stack(Settings.load(env={"STREAM_STACK_STATE_DIR": env["STREAM_STACK_STATE_DIR"]})
                           ).read_state()["broker"]
            stop_pid(broker.pid)
            gone = time.monotonic()
            assert wait_until(lambda: "broker: unavailable" in str(w.ready()), 15, 0.25), w.ready()
            assert wait_until(lambda: w.proc.poll() is not None, LIMIT_S + 30, 0.25), w.log_tail()
            took = time.monotonic() - gone
            log = w.log_path.read_text()
            fatal = [line for line in log.splitlines() if "event=worker_fatal" in line]
            assert w.proc.returncode == 70 and len(fatal) == 1, w.log_tail()
            assert "unreachable" in fatal[0] and "stream topics create" in fatal[0]
            assert took < LIMIT_S + 20, took
            assert len(log.splitlines()) < 400, "connection errors are rate-limited"
        finally:
            w.stop()


def test_sigterm_under_load_stops_a_worker_within_10s_and_cleanly(tmp_path):
    with fresh_stack(tmp_path) as env:
        bootstrap = env["STREAM_KAFKA_BOOTSTRAP_SERVERS"]
        stop = threading.Event()

        def feed():
            p = producer(bootstrap)
            wl = Workload(seed=606, users=300, user_prefix="t")
            while not stop.is_set():
                produce_workload(p, CLICKS, wl, events=1_000, batch_size=20, target_rate=3_000)
        w = WorkerProcess(env, tmp_path, "w")
        feeder = threading.Thread(target=feed, daemon=True)
        try:
            w.wait_ready()
            feeder.start()
            assert wait_until(lambda: w.counter("profile", "out") >= 3_000, 60, 0.25), w.log_tail()
            t0 = time.monotonic()
            w.proc.terminate()
            w.proc.wait(30)
            took = time.monotonic() - t0
            assert took < 10, (took, w.log_tail())
            assert w.proc.returncode in (0, -15), w.log_tail()
        finally:
            stop.set()
            feeder.join(30)
            w.stop()


def test_after_the_broker_lost_its_data_redis_takes_the_new_topic_s_profiles(tmp_path):
    """Issue on faults: after a broker restart (all data gone) the profiles start again at low
    versions; Redis held the old, higher ones and its version check kept them (silently). The
    clicks topic's id tells the incarnations apart, and the new one's profiles win."""
    from stream.adapters.kafka import ensure_topology, topic_id
    with fresh_stack(tmp_path) as env:
        bootstrap = env["STREAM_KAFKA_BOOTSTRAP_SERVERS"]
        old_id = topic_id(bootstrap, "clicks.v1")
        before = produce_workload(producer(bootstrap), CLICKS, Workload(seed=31, users=150, user_prefix="b"),
                                  events=6_000, batch_size=50, keep=True)
        _worker_until_exact(env, tmp_path, "w1", before.produced, "before the loss")
        settings = Settings.load(env={"STREAM_STACK_STATE_DIR": env["STREAM_STACK_STATE_DIR"]})
        broker = Stack(settings).read_state()["broker"]
        stop_pid(broker.pid)
        # the same broker address again, empty (Tansu keeps nothing), and the topics created again
        again = Settings.load(env={"STREAM_STACK_STATE_DIR": env["STREAM_STACK_STATE_DIR"],
                                   "STREAM_STACK_BROKER_PORT": str(broker.port)})
        Stack(again).up()
        ensure_topology(bootstrap, Topology.load())
        assert topic_id(bootstrap, "clicks.v1") not in (None, old_id)
        # fewer events for the same users: every new profile has a lower version than Redis holds
        after = produce_workload(producer(bootstrap), CLICKS, Workload(seed=32, users=150, user_prefix="b"),
                                 events=1_500, batch_size=50, keep=True)
        log = _worker_until_exact(env, tmp_path, "w2", after.produced, "after the loss")
        assert "event=clicks_incarnation" in log


def _worker_until_exact(env: dict, tmp_path, name: str, produced: list[dict], context: str) -> str:
    """Run a worker until Redis holds exactly the profiles of ``produced`` (polled: what Redis
    held before may already have higher versions); returns its log."""
    from tests.integration.pipeline import comparable, redis_profiles, reference_profiles
    reference = reference_profiles(produced)
    users = sorted(reference)

    def wrong() -> list[str]:
        got = redis_profiles(env["STREAM_REDIS_URL"], users)
        return [u for u in users if u not in got or comparable(got[u]) != comparable(reference[u])]
    w = WorkerProcess(env, tmp_path, name)
    try:
        w.wait_ready()
        assert wait_until(lambda: not wrong(), 90, 0.5), (context, len(wrong()), len(users), w.log_tail())
    finally:
        w.stop()
    return w.log_path.read_text()
