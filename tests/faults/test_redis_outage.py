"""Redis is a cache of the table: stopped under load, then back empty, nothing exits and every
profile is exact in Redis soon after (issue on faults: every worker used to exit 70)."""

from __future__ import annotations

import os
import time

import pytest
import redis

from stream.adapters.registry import ModelRegistry
from stream.config import DEV_HMAC_KEY, Settings
from stream.serde import SchemaRegistry
from stream.stack import Stack, redis_ready, stop_pid, wait_until
from stream.workload import Workload
from tests.integration.pipeline import Feeder, assert_exact_in_redis, fresh_stack
from tests.integration.workers import WorkerProcess

pytestmark = pytest.mark.integration
#: the issue's scenario is 30 s; the quick run in ./test.sh holds Redis down for 8 s
OUTAGE_S = 30.0 if os.environ.get("STREAM_FAULTS_LONG") else 8.0


def test_a_redis_outage_and_an_empty_restart_under_load_lose_no_profile_and_stop_no_worker(tmp_path):
    with fresh_stack(tmp_path) as env:
        bootstrap = env["STREAM_KAFKA_BOOTSTRAP_SERVERS"]
        state = Stack(Settings.load(env={"STREAM_STACK_STATE_DIR": env["STREAM_STACK_STATE_DIR"]})).read_state()
        server = state["redis"]
        feeder = Feeder(bootstrap, Workload(seed=303, users=500, user_prefix="r"), rate=2_000)
        w = WorkerProcess(env, tmp_path, "w")
        try:
            w.wait_ready()
            feeder.start()
            assert wait_until(lambda: w.counter("profile", "out") >= 2_000, 60, 0.25), w.log_tail()
            assert wait_until(lambda: (w.ready() or (0,))[0] == 200, 30, 0.25), w.ready()
            stop_pid(server.pid)
            down_at = time.monotonic()
            assert wait_until(lambda: "redis: unavailable" in str(w.ready()), 15, 0.25), w.ready()
            assert (w.ready() or (0,))[0] == 503
            while time.monotonic() - down_at < OUTAGE_S:  # the outage itself: the worker must carry on
                assert w.proc.poll() is None, w.log_tail()
                time.sleep(0.5)
            during = w.counter("profile", "out")
            assert "event=redis_unavailable" in w.log_path.read_text()
            back = Stack(Settings.load(env={"STREAM_STACK_STATE_DIR": env["STREAM_STACK_STATE_DIR"],
                                            "STREAM_STACK_REDIS_PORT": str(server.port)}))
            back.up()  # the same port, no persistence: Redis comes back empty
            assert redis_ready(env["STREAM_REDIS_URL"])
            assert wait_until(lambda: w.counter("profile", "out") > during + 2_000, 60, 0.25), w.log_tail()
            assert_exact_in_redis(env["STREAM_REDIS_URL"], feeder.stop(), timeout=30, context=w.log_tail())
            assert w.proc.poll() is None and "event=redis_recovered" in w.log_path.read_text(), w.log_tail()
            assert wait_until(lambda: (w.ready() or (0,))[0] == 200, 30, 0.25), w.ready()
            assert "event=worker_fatal" not in w.log_path.read_text()
        finally:
            feeder.stopping.set()
            w.stop()


def test_a_learner_on_an_emptied_registry_resumes_from_the_newest_release_on_models_v1(tmp_path):
    with fresh_stack(tmp_path) as env:
        first = WorkerProcess(env, tmp_path, "l1", stages="learn")
        try:
            first.wait_ready()
            assert wait_until(lambda: "event=model_released" in first.log_path.read_text(), 60, 0.25), \
                first.log_tail()
        finally:
            first.stop()
        released = [line for line in first.log_path.read_text().splitlines() if "event=model_released" in line]
        version = int(released[-1].split("version=")[1].split()[0])
        redis.Redis.from_url(env["STREAM_REDIS_URL"]).flushall()  # Redis restarted empty, in effect
        second = WorkerProcess(env, tmp_path, "l2", stages="learn")
        try:
            second.wait_ready()
            assert wait_until(lambda: "event=learner_resumed" in second.log_path.read_text(), 60, 0.25), \
                second.log_tail()
            log = second.log_path.read_text()
            assert f"event=registry_restored model=reco version={version}" in log
            assert f"event=learner_resumed model=reco version={version}" in log
            latest = ModelRegistry(env["STREAM_REDIS_URL"], DEV_HMAC_KEY, SchemaRegistry.default()).latest("reco")
            assert latest is not None and latest["version"] == version
        finally:
            second.stop()
