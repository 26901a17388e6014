"""`stream replay` through the real pipeline (its own broker, Redis and workers) on a slice, and the
in-process mode on the same slice: both run the same stage code and must agree."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.unit.test_replay import clustered_log

pytestmark = pytest.mark.integration


def replay(tmp_path, log, *args, timeout=300):
    out = tmp_path / f"summary{'-in' if '--in-process' in args else ''}.json"
    proc = subprocess.run([sys.executable, "-m", "stream.cli", "replay", str(log), "--positive-min-rating", "4",
                           "--json", str(out), *args], capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    return json.loads(out.read_text()), proc


def test_replay_through_the_real_pipeline_agrees_with_the_in_process_replay(tmp_path):
    log = tmp_path / "log.csv"
    log.write_text(clustered_log(users=80, per_user=40, seed=11))
    piped, proc = replay(tmp_path, log)
    local, _ = replay(tmp_path, log, "--in-process", "--no-baselines")
    assert piped["mode"] == "pipeline" and local["mode"] == "in-process"
    assert piped["unanswered"] == 0 and piped["n_eval"] == local["n_eval"] > 1000  # every request answered once
    assert piped["model_version"] > 1  # the learner learned from organic clicks and released, the scorer swapped
    pop = piped["baselines"]["popularity"]["hr10"]
    assert piped["hr10"] > 1.5 * pop and local["hr10"] > 1.5 * pop
    assert abs(piped["hr10"] - local["hr10"]) <= 0.1 * local["hr10"]
    assert abs(piped["candidate_recall"] - local["candidate_recall"]) <= 0.05
    assert "stream: replayed events" in proc.stderr and "ETA" in proc.stderr
