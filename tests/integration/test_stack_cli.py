"""`stream up` / `status` / `down` against the real binaries, through the CLI."""

import json
import os
import signal
import socket

import pytest

from stream.stack import pid_alive, wait_until
from tests.conftest import run_cli

pytestmark = pytest.mark.integration


@pytest.fixture
def state_env(tmp_path):
    env = {"STREAM_STACK_STATE_DIR": str(tmp_path / "state")}
    yield env
    run_cli("down", env=env)  # always stop what this test started


def _status(env):
    proc = run_cli("status", "--json", env=env)
    return proc.returncode, json.loads(proc.stdout)


def test_up_status_down_lifecycle(state_env):
    up = run_cli("up", env=state_env, check=True)
    assert "broker started" in up.stdout and "redis started" in up.stdout
    rc, st = _status(state_env)
    assert rc == 0
    assert st["broker"]["state"] == st["redis"]["state"] == "running"
    pids = {st["broker"]["pid"], st["redis"]["pid"]}

    again = run_cli("up", env=state_env, check=True)  # harmless the second time
    assert "already running" in again.stdout
    rc, st2 = _status(state_env)
    assert {st2["broker"]["pid"], st2["redis"]["pid"]} == pids

    down = run_cli("down", env=state_env, check=True)
    assert "broker stopped" in down.stdout and "redis stopped" in down.stdout
    assert all(not pid_alive(p) for p in pids)
    rc, st3 = _status(state_env)
    assert rc == 3 and st3["broker"]["state"] == "stopped"
    assert "nothing was running" in run_cli("down", env=state_env, check=True).stdout


def test_stale_state_is_detected_and_cleaned(state_env):
    run_cli("up", env=state_env, check=True)
    _, st = _status(state_env)
    broker_pid = st["broker"]["pid"]
    os.kill(broker_pid, signal.SIGKILL)  # the broker dies behind our back
    assert wait_until(lambda: not pid_alive(broker_pid), 10)

    rc, st = _status(state_env)
    assert rc == 3 and st["broker"]["state"] == "stale" and st["redis"]["state"] == "running"

    up = run_cli("up", env=state_env, check=True)
    assert f"stale entry for pid {broker_pid} cleaned" in up.stdout
    assert "redis already running" in up.stdout
    rc, st = _status(state_env)
    assert rc == 0 and st["broker"]["pid"] != broker_pid


def test_port_taken_is_a_clear_error(state_env):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        proc = run_cli("up", "--broker-port", str(port), env=state_env)
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("stream: error:") and f"port {port} is already in use" in last
    assert "Traceback" not in proc.stderr
    rc, st = _status(state_env)
    assert st["broker"]["state"] == "stopped"


def test_commands_without_a_stack_fail_clearly(state_env):
    proc = run_cli("topics", "list", env=state_env)
    assert proc.returncode == 1
    assert "no broker: run `stream up`" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize("args", [[], ["up"], ["status"], ["down"], ["topics"], ["topics", "create"],
                                  ["topics", "list"], ["tail"], ["produce"], ["config"],
                                  ["worker"], ["profile"], ["demo"], ["model"], ["model", "list"],
                                  ["model", "show"], ["model", "freeze"], ["model", "resume"], ["model", "reset"]])
def test_every_command_has_help(args):
    proc = run_cli(*args, "--help")
    assert proc.returncode == 0 and proc.stdout.startswith("usage: stream")


def test_config_shows_settings_but_never_keys():
    proc = run_cli("config", env={"STREAM_INGEST_PSEUDONYMISE_KEY": "s3cret", "STREAM_INGEST_MAX_SKEW_S": "5"},
                   check=True)
    cfg = json.loads(proc.stdout)
    assert cfg["ingest"]["max_skew_s"] == 5.0 and cfg["ingest"]["pseudonymise_key"] == "<set>"
    assert "s3cret" not in proc.stdout and cfg["model"]["hmac_key"] == "<development default>"


def test_config_names_what_production_mode_would_refuse_and_rejects_values_outside_their_choices():
    proc = run_cli("config", env={"STREAM_DEPLOY_MODE": "production"}, check=True)
    assert "production mode: model.hmac_key is the public development key" in proc.stderr
    assert "ingest.pseudonymise_key is empty" in proc.stderr
    proc = run_cli("config", env={"STREAM_FAUST_PROCESSING_GUARANTEE": "exactly_once"})
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "faust.processing_guarantee: 'exactly_once' is not one of: at_least_once" in proc.stderr
    proc = run_cli("config", env={"STREAM_FAUST_WEB_PORT": "99999"})
    assert proc.returncode != 0 and "faust.web_port: 99999 is outside 0..65535" in proc.stderr


def test_drift_status_says_alarms_are_off_until_calibrated(tmp_path):
    proc = run_cli("drift", "status", check=True)
    assert "calibrating" in proc.stdout and "alarms" in proc.stdout and "stream drift calibrate" in proc.stdout
    f = tmp_path / "t.yaml"
    f.write_text("thresholds:\n  input/*/psi: 0.4\n  input/*/js: 0.3\n")
    proc = run_cli("drift", "status", env={"STREAM_DRIFT_THRESHOLDS_FILE": str(f)}, check=True)
    assert "calibrated" in proc.stdout and "thresholds       2" in proc.stdout
