"""ingest + profile end to end: a real worker, the real broker and Redis."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
import urllib.request
from collections import Counter

import pytest

from stream.adapters.kafka import producer
from stream.loadgen import produce_workload
from stream.serde import SchemaRegistry
from stream.topology import Topology
from stream.workload import Workload
from tests.conftest import run_cli
from tests.integration.pipeline import (assert_exact_in_redis, comparable, fresh_stack, read_all,
                                        reference_profiles, wait_for_profiles)
from tests.integration.workers import WorkerProcess

pytestmark = pytest.mark.integration
REG = SchemaRegistry.default()
CLICKS = Topology.load().topic("clicks.v1")


@pytest.fixture(scope="module")
def scripted_run(tmp_path_factory):
    """20k events (batches and single events, 3% malformed) through one worker; results collected."""
    tmp = tmp_path_factory.mktemp("scripted")
    with fresh_stack(tmp) as env:
        bootstrap = env["STREAM_KAFKA_BOOTSTRAP_SERVERS"]
        wl = Workload(seed=101, users=300, user_prefix="s")
        p = producer(bootstrap)
        batched = produce_workload(p, CLICKS, wl, events=15_000, batch_size=100, malformed_share=0.03, keep=True)
        single = produce_workload(p, CLICKS, wl, events=5_000, batch_size=0, malformed_share=0.03, keep=True)
        valid = batched.produced + single.produced
        expected_rejects = batched.expected_rejects + single.expected_rejects
        reference = reference_profiles(valid)
        worker = WorkerProcess(env, tmp, "w1")
        try:
            worker.wait_ready()
            got = wait_for_profiles(env["STREAM_REDIS_URL"], reference, timeout=120)
            time.sleep(2.5)  # one more commit + monitor interval
            metrics = worker.metrics()
            with urllib.request.urlopen(f"http://127.0.0.1:{worker.port}/metrics", timeout=5) as resp:
                content_type = resp.headers["Content-Type"]
            top = run_cli("top", "--once", "--json", env=env, timeout=60)
            dlq = [REG.decode("DeadLetter", m.value) for m in read_all(bootstrap, "clicks.dlq.v1")]
            topic_profiles = [REG.decode("UserProfile", m.value) for m in read_all(bootstrap, "profiles.v1")]
            monitors = {s: [REG.decode("StageMetrics", m.value) for m in read_all(bootstrap, f"monitor.{s}.v1")]
                        for s in ("ingest", "profile")}
        finally:
            code = worker.stop()
        yield {"reference": reference, "redis": got, "metrics": metrics, "content_type": content_type, "top": top, "dlq": dlq, "profiles_topic": topic_profiles,
               "monitors": monitors, "expected_rejects": expected_rejects, "valid": valid, "exit": code,
               "log": worker.log_path.read_text()}


def test_every_malformed_record_is_in_the_dlq_with_its_reason(scripted_run):
    got = Counter(d["reason"] for d in scripted_run["dlq"])
    assert got == scripted_run["expected_rejects"]
    assert sum(got.values()) > 300
    for d in scripted_run["dlq"]:
        assert d["source_topic"] == "clicks.v1" and d["stage"] == "ingest" and d["message"]
        assert d["raw"], "the rejected bytes are kept"
        if d["reason"] != "undecodable":  # a rejected event is kept decodable, with its batch position
            kind, _ = REG.decode_clicks(d["raw"])
            assert kind == "ClickEvent" and d["error_class"] == "ValidationError"


def test_profiles_in_redis_equal_profiles_computed_from_the_input(scripted_run):
    ref, got = scripted_run["reference"], scripted_run["redis"]
    assert set(got) == set(ref)
    mismatched = [u for u in ref if comparable(got[u]) != comparable(ref[u])]
    assert not mismatched, (mismatched[:3], comparable(got[mismatched[0]]), comparable(ref[mismatched[0]]))


def test_latest_profile_per_user_on_the_compacted_topic_equals_reference(scripted_run):
    latest: dict[str, dict] = {}
    for p in scripted_run["profiles_topic"]:
        if p["user_id"] not in latest or p["version"] > latest[p["user_id"]]["version"]:
            latest[p["user_id"]] = p
    ref = scripted_run["reference"]
    assert set(latest) == set(ref)
    assert all(comparable(latest[u]) == comparable(ref[u]) for u in ref)
    assert len(scripted_run["profiles_topic"]) < len(scripted_run["valid"]) / 2  # coalesced, not one per event


def test_monitoring_topics_carry_plausible_counts_for_both_stages(scripted_run):
    ingest, profile = scripted_run["monitors"]["ingest"], scripted_run["monitors"]["profile"]
    assert ingest and profile
    n_valid, n_bad = len(scripted_run["valid"]), sum(scripted_run["expected_rejects"].values())
    assert sum(r["rejected"] for r in ingest) == n_bad
    assert sum(r["events_out"] for r in ingest) == n_valid
    assert sum(r["events_out"] for r in profile) == n_valid
    assert sum(r["events_in"] for r in ingest) == n_valid + n_bad - scripted_run["expected_rejects"]["undecodable"] \
        + scripted_run["expected_rejects"]["undecodable"]
    busy = [r for r in profile if r["events_out"]]
    assert all(r["processing_ms"]["p99"] > 0 and r["event_lag_ms"]["p50"] > 0 for r in busy)
    assert all(r["rss_bytes"] > 10_000_000 for r in ingest + profile)
    mix = Counter()
    for r in ingest:
        mix.update({k: v for k, v in r["inputs"].items() if k.startswith("mix.")})
    assert mix["mix.view"] > mix["mix.click"] > 0
    assert sum(r["outputs"].get("profiles_emitted", 0) for r in profile) >= len(scripted_run["reference"])


def test_prometheus_endpoint_exposes_stage_metrics(scripted_run, tmp_path):
    text = scripted_run["metrics"]
    n_valid = len(scripted_run["valid"])
    assert f'stream_events_total{{outcome="out",stage="profile"}} {float(n_valid)}' in text
    assert 'stream_processing_seconds_bucket{le="+Inf",stage="ingest"}' in text
    assert "stream_consumer_lag" in text and "stream_event_lag_seconds_count" in text
    assert 'stream_consumer_lag_events{stage="ingest"}' in text and 'stream_ready{stage="ingest"} 1.0' in text
    assert "user_id" not in text and 'item' not in text  # never ids as labels
    assert "process_cpu_seconds_total" in text and "process_resident_memory_bytes" in text
    assert scripted_run["content_type"].replace(" ", "").startswith("text/plain;version=0.0.4")
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (scripts/setup.sh installs it in CI)")
    f = tmp_path / "metrics.txt"
    f.write_text(text)
    res = subprocess.run([promtool, "check", "metrics"], stdin=f.open(), capture_output=True, text=True, timeout=30)
    assert res.returncode == 0, res.stdout + res.stderr


def test_worker_logs_are_structured(scripted_run):
    lines = [l for l in scripted_run["log"].splitlines() if l.strip()]
    assert any("event=worker_starting" in l for l in lines)
    assert any("event=dead_letter" in l and "reason=" in l for l in lines)
    assert scripted_run["exit"] == 0 or scripted_run["exit"] == -15


def test_kill9_restart_and_second_worker_lose_nothing_and_count_nothing_twice(tmp_path):
    with fresh_stack(tmp_path) as env:
        bootstrap = env["STREAM_KAFKA_BOOTSTRAP_SERVERS"]
        wl = Workload(seed=202, users=400, user_prefix="k")
        produced: list[dict] = []
        enough = threading.Event()  # set once the second worker has taken part

        def feed():  # 5,000 events/s in chunks until the scenario has played out (and at least 40,000)
            p = producer(bootstrap)
            while (len(produced) < 40_000 or not enough.is_set()) and len(produced) < 400_000:
                produced.extend(produce_workload(p, CLICKS, wl, events=2_500, batch_size=50, target_rate=5_000,
                                                 keep=True).produced)
        feeder = threading.Thread(target=feed, daemon=True)
        feeder.start()
        a = WorkerProcess(env, tmp_path, "a")
        workers = [a]
        try:
            a.wait_ready()
            deadline = time.monotonic() + 60
            while a.counter("profile", "out") < 5_000 and time.monotonic() < deadline:
                time.sleep(0.1)
            assert a.counter("profile", "out") >= 5_000, a.log_tail()
            a_out = a.counter("profile", "out")
            a.kill9()  # mid-stream, no goodbye
            a2 = WorkerProcess(env, tmp_path, "a2")
            workers.append(a2)
            a2.wait_ready()
            time.sleep(3)
            b = WorkerProcess(env, tmp_path, "b")  # a second worker joins mid-stream
            workers.append(b)
            b.wait_ready()
            deadline = time.monotonic() + 60
            while b.counter("profile", "out") == 0 and time.monotonic() < deadline:
                time.sleep(0.2)
            assert b.counter("profile", "out") > 0, f"the second worker took over partitions: {b.log_tail()}"
            enough.set()
            feeder.join(60)
            assert not feeder.is_alive()
            assert_exact_in_redis(env["STREAM_REDIS_URL"], produced, timeout=120)
            # The killed worker had folded events it never committed; they were processed again
            # after the restart (at least once), and the profiles above are still exact.
            folded = a_out + a2.counter("profile", "out") + b.counter("profile", "out")
            assert folded > len(produced), "the kill should have forced re-processing"
        finally:
            for w in workers:
                w.stop()


def test_stream_top_shows_the_running_worker_s_stages(scripted_run):
    top = scripted_run["top"]
    assert top.returncode == 0 and "Traceback" not in top.stderr, top.stderr
    snap = json.loads(top.stdout)
    rows = {r["stage"]: r for r in snap["stages"]}
    assert {"ingest", "profile"} <= set(rows), rows
    assert rows["ingest"]["workers"] == 1 and rows["ingest"]["ready"] == 1
    assert rows["ingest"]["lag_events"] is not None and rows["ingest"]["lag_unknown"] == 0
