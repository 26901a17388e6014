"""The main job on the embedded stack: the whole pipeline with simulated users, summarised.

1. start the embedded broker + Redis (unless running) and create every topic;
2. start a worker running the clicks stages (ingest, profile, feedback, score) and the
   learner in a worker of its own (a learner fused with the clicks stages fetches its
   feedback slowly: ~15 examples/s against ~2,000/s produced, measured in this demo);
3. warm up with a synthetic clickstream (batch envelopes, 1% malformed -> DLQ);
4. run the closed-loop simulator: users with item-level tastes ask for recommendations
   and click the items they like; the model learns from that feedback and is released
   and hot-swapped;
   Half-way (runs of 40 s or more), the drift thresholds are calibrated on the drift reports
   so far (a stationary stream: `stream drift calibrate`'s code) and the drift worker is
   restarted with them; its alarms from then on are false alarms;
5. print events, recommendations, CTR over time against the CTR of a random list, of
   the most popular items and of each user's ideal list (the oracle),
   model versions released, rejected records, drift alarms; stop what it started.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from stream.adapters.kafka import ensure_topology, producer, read
from stream.adapters.registry import ModelRegistry
from stream.config import Settings
from stream.core.drift import calibrate
from stream.errors import StreamError
from stream.loadgen import produce_workload
from stream.monitor import events_sample, sample_value, scrape
from stream.serde import SchemaRegistry
from stream.simulator import ClosedLoop, SimReport
from stream.stack import Stack, free_port, stop_pid, wait_until
from stream.topology import Topology
from stream.workload import Workload


@dataclass
class DemoOptions:
    seconds: float = 60.0
    rate: float = 1000.0
    users: int = 500
    warmup_events: int = 20_000
    keep: bool = False
    #: the demo's drift windows (short, so that a minute holds enough of them to calibrate)
    drift_window_s: float = 2.0


#: a run shorter than this does not calibrate its drift thresholds (too few windows)
CALIBRATE_MIN_S = 40.0


class DriftCalibration(threading.Thread):
    """At ``at_s`` into the simulation: thresholds from the drift reports so far, for one false
    alarm per ``target`` windows, then the drift worker restarted with them (``procs["drift"]``)."""

    def __init__(self, settings: Settings, bootstrap: str, redis_url: str, procs: dict, at_s: float,
                 env: dict[str, str], target: float = 1000.0) -> None:
        super().__init__(name="drift-calibration", daemon=True)
        self.settings, self.bootstrap, self.redis_url, self.procs = settings, bootstrap, redis_url, procs
        self.at_s, self.env, self.target = at_s, env, target
        self.started_ms: int | None = None  # when the calibrated drift worker started
        self.error: str | None = None
        self.stop = threading.Event()

    def run(self) -> None:
        if self.stop.wait(self.at_s):
            return
        try:
            from stream.drift_cli import stationary_values, write_thresholds  # noqa: PLC0415
            d = self.settings.drift
            values, windows = stationary_values(self.bootstrap, SchemaRegistry(self.settings.paths.schemas_dir),
                                                d.alerting, min_samples=d.min_samples)
            if not values:
                raise StreamError("no drift report with enough samples yet")
            path = Path(self.settings.stack.state_dir) / "demo-drift-thresholds.yaml"
            per_day = write_thresholds(path, calibrate(values, self.target), windows, self.target,
                                       float(self.env["STREAM_DRIFT_WINDOW_S"]))
            say(f"[drift] calibrated {len(values)} statistics on {windows} stationary windows (one false alarm "
                f"expected per {self.target:g} windows, {per_day:.2g}/day); restarting the drift worker with {path}")
            stop_pid(self.procs["drift"].pid, 20)
            self.started_ms = int(time.time() * 1000)
            proc, log, _ = start_worker(self.settings, self.bootstrap, self.redis_url, "demo-drift-calibrated",
                                        stages="drift", extra_env={**self.env, "STREAM_DRIFT_THRESHOLDS_FILE": str(path)})
            self.procs["drift"] = proc
            say(f"[drift] calibrated drift worker running (pid {proc.pid}, log {log}); its alarms are false alarms")
        except StreamError as exc:
            self.error = str(exc)
            say(f"[drift] not calibrated: {exc}")


def say(text: str) -> None:
    print(text, flush=True)


def start_worker(settings: Settings, bootstrap: str, redis_url: str, name: str = "demo", stages: str | None = None,
                 extra_env: dict[str, str] | None = None) -> tuple[subprocess.Popen, Path, int]:
    """Start `stream worker` as a child process; return once it owns its partitions."""
    port = free_port()
    log_path = Path(settings.stack.state_dir) / f"{name}-worker.log"
    env = dict(os.environ, STREAM_KAFKA_BOOTSTRAP_SERVERS=bootstrap, STREAM_REDIS_URL=redis_url,
               STREAM_STACK_STATE_DIR=settings.stack.state_dir, **(extra_env or {}))
    with open(log_path, "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "stream.cli", "worker", "--web-port", str(port),
                                 "--worker-id", name, *(["--stages", stages] if stages else [])],
                                env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def assigned() -> bool:
        if proc.poll() is not None:
            raise StreamError(f"worker exited with code {proc.returncode}; see {log_path}")
        return "event=partitions_assigned" in log_path.read_text(errors="replace")
    if not wait_until(assigned, 90, 0.2):
        stop_pid(proc.pid)
        raise StreamError(f"worker did not join the consumer group within 90s; see {log_path}")
    return proc, log_path, port


def run(settings: Settings, opts: DemoOptions) -> int:
    stack = Stack(settings)
    started_here = not stack.running()
    procs, done = stack.up()
    for line in done:
        say(f"[stack] {line}")
    bootstrap = settings.kafka.bootstrap_servers or procs["broker"].endpoint
    redis_url = settings.redis.url or procs["redis"].endpoint
    worker = learner = None
    procs: dict = {}
    calibration = None
    try:
        topology = Topology.load(settings.paths.topology)
        results = ensure_topology(bootstrap, topology)
        say(f"[topics] {sum(r.created for r in results)} created, {sum(not r.created for r in results)} already there")
        worker, log_path, port = start_worker(settings, bootstrap, redis_url, stages="ingest,profile,feedback,score")
        say(f"[worker] running ingest, profile, feedback, score (pid {worker.pid}, metrics "
            f"http://127.0.0.1:{port}/metrics, log {log_path})")
        learner, learner_log, _ = start_worker(settings, bootstrap, redis_url, "demo-learn", stages="learn")
        say(f"[learner] the single learner and rollout controller (pid {learner.pid}, log {learner_log})")
        wl = Workload(seed=int(time.time()) % 100_000, users=opts.users, tastes=8)
        stats = produce_workload(producer(bootstrap), topology.topic("clicks.v1"), wl, events=opts.warmup_events,
                                 batch_size=100, malformed_share=0.01)
        say(f"[warm-up] {stats.events:,} events in {stats.messages} messages ({stats.malformed} malformed)")
        # a trailing reference: the demo's profiles mature and its model learns as it runs (a fixed
        # reference of the first windows raised 4 false alarms on profile shares after calibration)
        drift_env = {"STREAM_DRIFT_WINDOW_S": str(opts.drift_window_s), "STREAM_DRIFT_TRAILING_WINDOWS": "5"}
        procs["drift"], drift_log, _ = start_worker(settings, bootstrap, redis_url, "demo-drift", stages="drift",
                                                    extra_env=drift_env)
        say(f"[drift] drift worker running (pid {procs['drift'].pid}, log {drift_log}); its reference is the first "
            f"{settings.drift.reference_windows} windows of {opts.drift_window_s:g}s"
            + ("" if opts.seconds >= CALIBRATE_MIN_S else
               f"; a run under {CALIBRATE_MIN_S:.0f}s does not calibrate it: alarms stay off"))
        if opts.seconds >= CALIBRATE_MIN_S:
            calibration = DriftCalibration(settings, bootstrap, redis_url, procs, opts.seconds / 2, drift_env)
            calibration.start()
        sim = ClosedLoop(bootstrap, wl, rate=opts.rate, partitions=topology.topic("clicks.v1").partitions, batch_ms=50)
        say(f"[simulator] {opts.users} users, {opts.rate:,.0f} events/s for {opts.seconds:.0f}s; "
            f"CTR of a random list {sim.report.random_ctr:.3f}, of the most popular items "
            f"{sim.report.popular_ctr:.3f}, of each user's ideal list {sim.report.ideal_ctr:.3f}")
        report = sim.run(opts.seconds, progress=lambda r: _progress(r))
        if calibration is not None:
            calibration.join(60)
        time.sleep(2)
        _summary(report, settings, bootstrap, redis_url, port, calibration)
        return 0
    finally:
        if calibration is not None:
            calibration.stop.set()
            calibration.join(60)
        for proc in (worker, learner, procs.get("drift")):
            if proc is not None:
                stop_pid(proc.pid, 20)
        if opts.keep or not started_here:
            say(f"[stack] left running (stop it with `stream down`): broker {bootstrap}")
        else:
            for line in stack.down():
                say(f"[stack] {line}")


def _progress(r: SimReport) -> None:
    w = r.windows[-1] if r.windows else None
    if w is not None:
        versions = ",".join(f"v{v}" for v in sorted(w.versions)) or "-"
        say(f"[simulator] {r.events:,} events, {r.recommendations:,} recommendations; last window CTR {w.ctr:.3f} "
            f"(served by {versions})")


def _summary(r: SimReport, settings: Settings, bootstrap: str, redis_url: str, port: int,
             calibration: DriftCalibration | None = None) -> None:
    reg = SchemaRegistry(settings.paths.schemas_dir)
    models = ModelRegistry(redis_url, settings.model.hmac_key, reg, settings.redis.key_prefix)
    releases = models.versions(settings.model.name)
    dlq = list(read(bootstrap, "clicks.dlq.v1", idle_timeout=1.0, deadline=time.monotonic() + 20))
    say("")
    say("== summary ==")
    say(f"events produced        {r.events:,} (simulated) ; rejected to DLQ: {len(dlq)}")
    folded = sample_value(scrape(port) or "", events_sample("profile", "out"))
    say(f"profiles (worker)      {folded:,.0f} events folded into profiles")
    say(f"recommendations        {r.recommendations:,} read by the simulator ({r.requests:,} asked by it; answers to "
        f"the warm-up's requests included, those still queued at the end not), {r.served:,} items shown")
    say(f"CTR served             {r.ctr:.3f} (expected from ground truth {r.expected / max(r.served, 1):.3f})")
    say(f"CTR random / popular / ideal  {r.random_ctr:.3f} / {r.popular_ctr or 0:.3f} / {r.ideal_ctr:.3f}  -> served is "
        f"{r.ctr / max(r.random_ctr, 1e-9):.1f}x random, {r.ctr / max(r.popular_ctr or 0, 1e-9):.2f}x popular, "
        f"{r.ctr / max(r.ideal_ctr, 1e-9):.0%} of ideal")
    say("CTR over time:")
    for i, w in enumerate(r.windows):
        versions = ",".join(f"v{v}" for v in sorted(w.versions)) or "-"
        say(f"  {i * 5:>4}s  served {w.served:>6,}  CTR {w.ctr:.3f}  models {versions}")
    say(f"model versions         {len(releases)} released: " + ", ".join(
        f"v{x['version']} ({x['examples_seen']:,} ex, logloss {x['metrics'].get('log_loss', 0):.3f})"
        for x in releases[-5:]))
    models.close()
    deadline = time.monotonic() + 20
    counts = {t: sum(1 for _ in read(bootstrap, t, idle_timeout=1.0, deadline=deadline)) for t in
              ("drift.input.v1", "drift.profiles.v1", "drift.predictions.v1", "drift.concept.v1")}
    alerts = [reg.decode("Alert", m.value) for m in read(bootstrap, "alerts.v1", idle_timeout=1.0, deadline=deadline)]
    raised = [a for a in alerts if a["name"].startswith("drift.") and not a["name"].endswith(".cleared")]
    line = "drift reports          " + ", ".join(f"{t.split('.')[1]} {n:,}" for t, n in counts.items())
    if calibration is not None and calibration.started_ms is not None:
        after = [a for a in raised if a["created"] >= calibration.started_ms]
        judged = {r["window_start"] for m in read(bootstrap, "drift.input.v1", idle_timeout=1.0, deadline=deadline)
                  if (r := reg.decode("DriftReport", m.value))["calibrated"] and r["window_start"] >= calibration.started_ms}
        say(line + f"; calibrated half-way: {len(after)} false alarm(s) in {len(judged)} windows after calibration"
            + (": " + ", ".join(sorted({a['name'] for a in after})[:6]) if after else ""))
        return
    from stream.drift_cli import drift_status  # noqa: PLC0415
    status = drift_status(settings)
    say(line + f"; {len(raised)} drift alarm(s); drift is {status['state']} (alarms {status['alarms'].split(':')[0]})"
        + (": " + ", ".join(sorted({a['name'] for a in raised})[:6]) if raised else ""))
