"""`stream model` rollout commands against a real broker and Redis with no learner running:
they wait (bounded) for an answer and say that none came, with exit 1."""

from __future__ import annotations

import time

import pytest

from stream.adapters.kafka import read
from stream.adapters.registry import ModelRegistry
from stream.core.model import new_model
from stream.serde import SchemaRegistry
from tests.conftest import run_cli
from tests.integration.pipeline import fresh_stack

pytestmark = pytest.mark.integration
SERDE = SchemaRegistry.default()


def test_without_a_learner_a_rollout_command_times_out_with_exit_1_and_no_wait_returns_at_once(tmp_path):
    with fresh_stack(tmp_path) as env:
        models = ModelRegistry(env["STREAM_REDIS_URL"], "stream-dev-registry-key", SERDE)
        v = models.release("reco", new_model(), family="logreg", parent=None, examples=0, metrics={})["version"]
        models.close()
        t0 = time.monotonic()
        r = run_cli("model", "shadow", str(v), "--timeout", "2", env=env)
        assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
        assert "stream: error: no answer from the learner within 2s" in r.stderr
        assert time.monotonic() - t0 < 30
        r = run_cli("model", "rollback", "--no-wait", env=env)
        assert r.returncode == 0 and "not waiting" in r.stdout, r.stderr
        sent = [SERDE.decode("ControlCommand", m.value) for m in
                read(env["STREAM_KAFKA_BOOTSTRAP_SERVERS"], "control.v1", idle_timeout=1.0,
                     deadline=time.monotonic() + 20)]
        assert [c["action"] for c in sent] == ["SHADOW", "ROLLBACK"]  # both on record for a learner to apply
        r = run_cli("model", "shadow", str(v), "--timeout", "0", env=env)
        assert r.returncode == 2 and "must be within (0, 3600]" in r.stderr


def test_commands_that_only_read_redis_need_no_broker(tmp_path):
    with fresh_stack(tmp_path) as env:
        models = ModelRegistry(env["STREAM_REDIS_URL"], "stream-dev-registry-key", SERDE)
        models.release("reco", new_model(), family="logreg", parent=None, examples=0, metrics={})
        models.close()
        no_broker = {k: v for k, v in env.items() if k != "STREAM_KAFKA_BOOTSTRAP_SERVERS"}
        no_broker["STREAM_STACK_STATE_DIR"] = str(tmp_path / "no-stack")  # and no embedded one to find
        r = run_cli("model", "list", env=no_broker)
        assert r.returncode == 0 and "v1" in r.stdout and "1 release(s)" in r.stdout, r.stderr
        r = run_cli("model", "status", env=no_broker)
        assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
        r = run_cli("profile", "nobody", env=no_broker)
        assert r.returncode == 1 and "no profile for user 'nobody'" in r.stderr, r.stderr
        r = run_cli("model", "rollback", env=no_broker)  # this one travels on control.v1
        assert r.returncode == 1 and r.stderr.strip().splitlines()[-1].startswith("stream: error: no broker"), r.stderr
