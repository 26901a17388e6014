"""The README's main job, small: `stream demo` brings everything up, runs the loop, summarises, cleans up."""

import re

import pytest

from stream.stack import pid_alive
from tests.conftest import run_cli

pytestmark = pytest.mark.integration


def test_demo_runs_the_whole_pipeline_and_stops_what_it_started(tmp_path):
    env = {"STREAM_STACK_STATE_DIR": str(tmp_path / "state"), "STREAM_MODEL_RELEASE_EVERY_EXAMPLES": "300"}
    proc = run_cli("demo", "--seconds", "15", "--rate", "600", "--users", "100", "--warmup-events", "3000",
                   env=env, timeout=240)
    out = proc.stdout
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "[worker] running ingest, profile, feedback, score" in out and "[learner] the single learner" in out
    assert "== summary ==" in out
    assert "[drift] drift worker running" in out and "drift reports          input" in out
    served = int(re.search(r"recommendations\s+([\d,]+) read by", out).group(1).replace(",", ""))
    assert served > 50
    ctr = float(re.search(r"CTR served\s+([\d.]+)", out).group(1))
    random_ctr = float(re.search(r"CTR random / popular / ideal\s+([\d.]+)", out).group(1))
    assert ctr > random_ctr, "even a short run serves better than random"
    releases = int(re.search(r"model versions\s+(\d+) released", out).group(1))
    assert releases >= 2
    rejected = int(re.search(r"rejected to DLQ: (\d+)", out).group(1))
    assert rejected > 0  # the warm-up's malformed records, each in the DLQ
    pids = [int(p) for p in re.findall(r"stopped \(pid (\d+)\)", out)]
    assert len(pids) == 2 and not any(pid_alive(p) for p in pids)
    workers = [int(p) for p in re.findall(r"^\[(?:worker|learner|drift)\] .*?\(pid (\d+)", out, re.M)]
    assert len(workers) == 3 and not any(pid_alive(p) for p in workers)


def test_a_demo_of_a_minute_calibrates_its_drift_thresholds_half_way_and_then_raises_no_alarm(tmp_path):
    env = {"STREAM_STACK_STATE_DIR": str(tmp_path / "state")}
    proc = run_cli("demo", "--seconds", "50", "--rate", "600", "--users", "200", "--warmup-events", "5000",
                   env=env, timeout=300)
    out = proc.stdout
    assert proc.returncode == 0, proc.stderr[-2000:]
    m = re.search(r"\[drift\] calibrated (\d+) statistics on (\d+) stationary windows", out)
    assert m and int(m.group(1)) >= 10 and int(m.group(2)) >= 5, out[-3000:]
    assert "[drift] calibrated drift worker running" in out
    m = re.search(r"calibrated half-way: (\d+) false alarm\(s\) in (\d+) windows after calibration", out)
    assert m, out[-3000:]
    alarms, windows = int(m.group(1)), int(m.group(2))
    assert windows >= 3
    # one false alarm is expected per 1,000 windows over all statistics: a handful of windows holds none
    assert alarms == 0, out[-3000:]
    workers = [int(p) for p in re.findall(r"^\[(?:worker|learner|drift)\] .*?\(pid (\d+)", out, re.M)]
    assert len(workers) == 4 and not any(pid_alive(p) for p in workers)
