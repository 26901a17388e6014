"""Drift end to end (real broker, real Redis, real workers): a scripted sudden drift in the
closed loop (a sudden covariate change) produces DriftReports on all four drift topics, and alerts on alerts.v1 after
the change point and none before it; `stream drift reset-reference` reaches the worker."""

from __future__ import annotations

import threading
import time

import pytest

from stream.adapters.kafka import read
from stream.adapters.registry import ModelRegistry
from stream.serde import SchemaRegistry
from stream.simulator import ClosedLoop
from stream.stack import wait_until
from stream.workload import Scenario, Workload
from tests.conftest import run_cli, stack_env
from tests.integration.pipeline import fresh_stack
from tests.integration.workers import WorkerProcess

pytestmark = pytest.mark.integration
SERDE = SchemaRegistry.default()
TOPICS = ("drift.input.v1", "drift.profiles.v1", "drift.predictions.v1", "drift.concept.v1")
# generous thresholds: this checks the mechanics; docs/drift.md evaluates calibrated ones
ENV = {"STREAM_MODEL_ATTRIBUTION_WINDOW_S": "3", "STREAM_DRIFT_WINDOW_S": "1", "STREAM_DRIFT_GRACE_S": "0.3",
       "STREAM_DRIFT_REFERENCE_WINDOWS": "3", "STREAM_DRIFT_MIN_SAMPLES": "100", "STREAM_DRIFT_IDLE_CLOSE_S": "3",
       "STREAM_DRIFT_PSI": "0.6", "STREAM_DRIFT_JS": "0.3", "STREAM_DRIFT_KS": "0.35", "STREAM_DRIFT_RATE_CHANGE": "1.5",
       "STREAM_DRIFT_ADWIN": "3.5", "STREAM_DRIFT_PAGE_HINKLEY": "3.5"}


def test_a_sudden_input_drift_is_reported_on_every_drift_topic_and_alerted_only_after_the_change(tmp_path):
    with fresh_stack(tmp_path) as env:
        # the downstream stages move for a while even on a stationary loop (popularity counts and young
        # profiles grow; docs/drift.md): per-stage thresholds, as `stream drift calibrate` would write
        thresholds = tmp_path / "thresholds.yaml"
        thresholds.write_text("thresholds:\n" + "".join(f"  {stage}/*/{stat}: {value}\n" for stage in (
            "profiles", "predictions", "concept") for stat, value in (("psi", 2.0), ("ks", 0.6), ("js", 0.5))))
        env = {**env, **ENV, "STREAM_DRIFT_THRESHOLDS_FILE": str(thresholds)}
        boot = env["STREAM_KAFKA_BOOTSTRAP_SERVERS"]
        main = WorkerProcess(env, tmp_path, "main")
        drift = None
        try:
            main.wait_ready()
            wl = Workload(seed=11, users=300)
            # one continuous closed loop (a restart would put a start-up transient in the reference),
            # sending batch envelopes as the drift evaluation does (fewer messages for the 2 cores)
            loop = ClosedLoop(boot, wl, rate=800, seed=1, batch_ms=50)
            sim = threading.Thread(target=loop.run, args=(75,), daemon=True)
            sim.start()
            time.sleep(15)  # the model learns ...
            models = ModelRegistry(env["STREAM_REDIS_URL"], "stream-dev-registry-key", SERDE)
            models.set_flag("reco", "frozen", True)  # ... then serves a fixed model
            models.close()
            drift = WorkerProcess(env, tmp_path, "drift", stages="drift")
            drift.wait_ready()
            assert wait_until(lambda: "event=partitions_assigned" in drift.log_path.read_text(), 60, 0.2)
            change_ms = int(time.time() * 1000) + 8000
            # a sudden change of the input population (device, country, prices) at a known point;
            # rolling preferences ("sudden") barely moves the input marginals (docs/drift.md)
            wl.scenario = Scenario("covariate", change_at_ms=change_ms)
            assert wait_until(lambda: "drift_alarm" in drift.log_path.read_text(), 40, 0.5), drift.log_tail()
            sim.join(90)  # the loop ends 75 s after it started: windows after the change for every stage
            time.sleep(5)  # the last windows close by the idle rule

            reports = {t: [SERDE.decode("DriftReport", m.value) for m in
                           read(boot, t, idle_timeout=1.0, deadline=time.monotonic() + 20)] for t in TOPICS}
            for topic, recs in reports.items():
                assert recs, f"no DriftReport on {topic}"
                assert {r["stage"] for r in recs} == {topic.split(".")[1]}
                assert all(r["window_end"] - r["window_start"] == 1000 and r["reference_id"] for r in recs)
            before = [r for r in reports["drift.input.v1"] if r["window_end"] <= change_ms]
            assert before, "no input window was compared before the change point"
            dev = [r for r in reports["drift.input.v1"] if r["quantity"] == "device" and r["statistic"] == "psi"
                   and r["window_start"] >= change_ms and r["sample_size"] >= 100]  # not the loop's last trickle
            # device PSI after the change is ~0.75-0.8 against a test threshold of 0.6: nearly every window alarms
            assert len(dev) >= 5 and sum(r["alarm"] for r in dev) >= 0.8 * len(dev), \
                [(r["value"], r["sample_size"]) for r in dev]

            alerts = [SERDE.decode("Alert", m.value) for m in
                      read(boot, "alerts.v1", idle_timeout=1.0, deadline=time.monotonic() + 20)]
            raised = [a for a in alerts if a["name"].startswith("drift.") and not a["name"].endswith(".cleared")]
            assert [a["name"] for a in raised if int(a["evidence"]["window_end"]) <= change_ms] == []
            after = {a["name"] for a in raised if int(a["evidence"]["window_end"]) > change_ms}
            assert {"drift.input.device.psi", "drift.input.country.psi"} <= after, sorted(after)
            first = min(raised, key=lambda a: int(a["evidence"]["window_end"]))
            assert int(first["evidence"]["window_end"]) - change_ms <= 2000  # within 2 windows of 1 s

            r = run_cli("drift", "reset-reference", "--stage", "input", env=env)
            assert r.returncode == 0 and "reset requested for input" in r.stdout, r.stderr
            assert wait_until(lambda: "event=drift_reference_reset stages=input" in drift.log_path.read_text(), 20,
                              0.2), drift.log_tail()
        finally:
            if drift is not None:
                drift.stop()
            main.stop()


def test_drift_runs_alone_and_reset_reference_refuses_an_unknown_stage(stack):
    r = run_cli("worker", "--stages", "ingest,profile,drift", env=stack_env(stack))
    assert r.returncode == 1 and "drift runs in its own worker" in r.stderr
    r = run_cli("drift", "reset-reference", "--stage", "bogus", env=stack_env(stack))
    assert r.returncode == 1 and "unknown drift stage(s) bogus" in r.stderr
