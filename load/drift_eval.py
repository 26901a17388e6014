"""Drift evaluation: each scenario through the whole pipeline, detection delays per stage.

For every run: a fresh embedded stack, a worker with every stage, a closed-loop warm-up
(the model learns, then learning is frozen so the served model stays fixed), then the
drift worker (its reference is the first windows it sees) and the simulator with the
scenario, whose change point is known. Afterwards the drift reports and alerts are read
back from the broker.

1. ``stationary-calibration``: a stationary run; `stream drift calibrate` logic sets the
   thresholds from it (target: one false alarm per ``--target-run-windows`` windows);
2. ``stationary``: a second, longer stationary run at the calibrated thresholds (false alarms);
3. each drift scenario at the calibrated thresholds: detection delay (windows after the
   change point, or after the 50% point of a gradual change), events after the change,
   false alarms before it, and which stage alarmed first.

    python -m load.drift_eval --out docs/drift-results.json
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

from stream.adapters.kafka import ensure_topology, read
from stream.adapters.registry import ModelRegistry
from stream.config import Settings
from stream.core.drift import calibrate
from stream.demo import start_worker
from stream.drift_cli import stationary_values
from stream.serde import SchemaRegistry
from stream.simulator import ClosedLoop
from stream.stack import Stack, stop_pid
from stream.topology import Topology
from stream.workload import Scenario, Workload

SCENARIOS = ("sudden", "gradual", "covariate", "concept", "upstream_bug")
#: time allowed for the drift worker to start and join (the closed loop runs on meanwhile)
STARTUP_S = 20.0


def say(text: str) -> None:
    print(text, flush=True)


def run_one(kind: str, opts: argparse.Namespace, thresholds_file: str | None, pre_s: float, post_s: float) -> dict:
    """One scenario on a fresh stack; returns the alerts, reports' windows and the change point."""
    tmp = Path(tempfile.mkdtemp(prefix=f"drift-{kind}-"))
    settings = Settings.load(env={"STREAM_STACK_STATE_DIR": str(tmp / "state")})
    stack = Stack(settings)
    procs, _ = stack.up()
    boot, redis_url = procs["broker"].endpoint, procs["redis"].endpoint
    serde = SchemaRegistry.default()
    env = {"STREAM_MODEL_ATTRIBUTION_WINDOW_S": str(opts.attribution_s), "STREAM_DRIFT_WINDOW_S": str(opts.window_s),
           "STREAM_DRIFT_GRACE_S": str(opts.grace_s), "STREAM_DRIFT_MIN_SAMPLES": str(opts.min_samples),
           "STREAM_DRIFT_REFERENCE_WINDOWS": str(opts.reference_windows), "STREAM_MONITOR_INTERVAL_S": "2"}
    if thresholds_file:
        env["STREAM_DRIFT_THRESHOLDS_FILE"] = thresholds_file
    workers = []
    try:
        ensure_topology(boot, Topology.load())
        main, _, _ = start_worker(settings, boot, redis_url, "main", extra_env=env)
        workers.append(main)
        wl = Workload(seed=opts.seed, users=opts.users)
        # one continuous closed loop: the drift worker's reference must not see a start-up
        # transient (no recommendations yet, so no clicks on them: a different event mix)
        total = opts.warmup_s + STARTUP_S + pre_s + post_s
        loop = ClosedLoop(boot, wl, rate=opts.rate, seed=1, batch_ms=opts.batch_ms)
        sim_error: list[str] = []

        def simulate() -> None:
            try:
                loop.run(total)
            except Exception as exc:  # a stalled broker: recorded with the run, which is then not valid
                sim_error.append(f"{type(exc).__name__}: {exc}")
        sim = threading.Thread(target=simulate, daemon=True)
        sim.start()
        # windows ending after the closed loop stops hold its trickling tail, not the stream: left out
        until_ms = int((time.time() + total - opts.window_s) * 1000)
        time.sleep(opts.warmup_s)
        models = ModelRegistry(redis_url, settings.model.hmac_key, serde, settings.redis.key_prefix)
        models.set_flag(settings.model.name, "frozen", True)  # the served model stays fixed from here
        models.close()
        drift, _, _ = start_worker(settings, boot, redis_url, "drift", stages="drift", extra_env=env)
        workers.append(drift)
        start_ms = int(time.time() * 1000)
        change_ms = start_ms + int(pre_s * 1000)
        span_ms = int(opts.gradual_span_s * 1000) if kind == "gradual" else 0
        wl.scenario = Scenario(kind, change_at_ms=change_ms, span_ms=span_ms)
        time.sleep(max(0.0, change_ms / 1000 + post_s - time.time()))
        sim.join(total + 60)
        time.sleep(opts.window_s * 2 + 2)  # the last windows close (event time + grace, then the timer)
        deadline = time.monotonic() + 60
        alerts = [a for a in (serde.decode("Alert", m.value) for m in read(boot, "alerts.v1", idle_timeout=1.0,
                                                                            deadline=deadline))
                  if int(a["evidence"].get("window_end", 0)) <= until_ms]
        values, windows = stationary_values(boot, serde, settings.drift.alerting, until_ms=until_ms,
                                            min_samples=opts.min_samples, timeout_s=60)
        first_window = min((int(a["evidence"]["window_start"]) for a in alerts), default=None)
        return {"kind": kind, "start_ms": start_ms, "change_ms": change_ms,
                "midpoint_ms": wl.scenario.midpoint_ms, "alerts": alerts, "values": values, "windows": windows,
                "first_alert_window": first_window, "events": loop.report.events,
                "delivery_error": sim_error[0] if sim_error else None}
    finally:
        for p in workers:
            stop_pid(p.pid, 20)
        stack.down()


def delivery(run: dict) -> dict:
    """How many events the closed loop sent and whether all were delivered (a run where the
    embedded broker fell behind is reported as such, not as a result)."""
    return {"events": run["events"], "delivery_error": run["delivery_error"]}


def summarise(run: dict, window_ms: int, rate: float) -> dict:
    """Per stage: the first alarm after the change point, delay in windows and events; false alarms before."""
    point = run["midpoint_ms"] if run["kind"] == "gradual" else run["change_ms"]
    raised = [a for a in run["alerts"] if not a["name"].endswith(".cleared")]
    before = [a for a in raised if int(a["evidence"]["window_end"]) <= run["change_ms"]]
    per_stage: dict[str, dict] = {}
    for a in sorted(raised, key=lambda a: int(a["evidence"]["window_end"])):
        end = int(a["evidence"]["window_end"])
        stage = a["evidence"]["stage"]
        if end <= run["change_ms"] or stage in per_stage:
            continue
        delay = max(0.0, (end - point) / window_ms)
        per_stage[stage] = {"alert": a["name"], "value": float(a["evidence"]["value"]),
                            "threshold": float(a["evidence"]["threshold"]), "delay_windows": math.ceil(delay),
                            "events_after_change": int(max(0, end - point) / 1000 * rate), "window_end": end}
    first = min(per_stage.items(), key=lambda kv: kv[1]["window_end"])[0] if per_stage else None
    return {"kind": run["kind"], **delivery(run), "false_alarms_before_change": len(before),
            "false_alarm_names": sorted({a["name"] for a in before}), "detections": per_stage, "first_stage": first,
            "windows": run["windows"]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m load.drift_eval", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma-separated (default: all)")
    ap.add_argument("--rate", type=float, default=1000.0, help="simulated events/s (default 1000)")
    ap.add_argument("--batch-ms", type=float, default=50.0,
                    help="the simulated app sends batch envelopes this often per partition (0: one message per "
                         "event; default 50)")
    ap.add_argument("--users", type=int, default=500)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--window-s", type=float, default=2.0)
    ap.add_argument("--grace-s", type=float, default=1.0)
    ap.add_argument("--reference-windows", type=int, default=10)
    ap.add_argument("--min-samples", type=int, default=150)
    ap.add_argument("--attribution-s", type=float, default=8.0)
    ap.add_argument("--warmup-s", type=float, default=25.0, help="closed-loop learning before drift starts")
    ap.add_argument("--calibration-s", type=float, default=120.0)
    ap.add_argument("--stationary-s", type=float, default=230.0, help="validation run (>= 100 windows)")
    ap.add_argument("--pre-s", type=float, default=40.0, help="seconds from drift start to the change point")
    ap.add_argument("--post-s", type=float, default=30.0)
    ap.add_argument("--gradual-span-s", type=float, default=20.0)
    ap.add_argument("--target-run-windows", type=float, default=1000.0)
    ap.add_argument("--thresholds", default="", help="use this thresholds file instead of calibrating")
    ap.add_argument("--out", default="drift-results.json", help="JSON results file")
    opts = ap.parse_args(argv)
    window_ms = int(opts.window_s * 1000)
    results: dict = {"options": vars(opts)}
    thresholds = opts.thresholds
    if not thresholds:
        say(f"[calibration] stationary run, {opts.calibration_s:.0f}s")
        cal = run_one("stationary", opts, None, opts.calibration_s, 0)
        table = calibrate(cal["values"], opts.target_run_windows)
        thresholds = str(Path(opts.out).with_suffix(".thresholds.yaml"))
        Path(thresholds).write_text(yaml.safe_dump({"thresholds": {k: round(e["threshold"], 6)
                                                                    for k, e in table.items()}}))
        results["calibration"] = {"windows": cal["windows"], **delivery(cal), "thresholds": table}
        say(f"[calibration] {len(table)} thresholds from {cal['windows']} windows -> {thresholds}; "
            f"{cal['events']} events sent (browsing and clicks), delivery error: {cal['delivery_error']}")
    say(f"[stationary] validation run, {opts.stationary_s:.0f}s at the calibrated thresholds")
    st = run_one("stationary", opts, thresholds, opts.stationary_s, 0)
    st_alarms = [a for a in st["alerts"] if not a["name"].endswith(".cleared")]
    results["stationary"] = {"windows": st["windows"], "false_alarms": len(st_alarms),
                             "names": sorted({a["name"] for a in st_alarms}), **delivery(st),
                             "alarms": [{"name": a["name"], "window_start": a["evidence"]["window_start"],
                                         "value": a["evidence"]["value"], "threshold": a["evidence"]["threshold"]}
                                        for a in st_alarms],
                             "values": {"/".join(k): [round(v, 5) for v in vs] for k, vs in st["values"].items()}}
    say(f"[stationary] {st['windows']} windows, {len(st_alarms)} false alarm(s) {results['stationary']['names']}; "
        f"{st['events']} events sent (browsing and clicks), delivery error: {st['delivery_error']}")
    results["scenarios"] = []
    for kind in [k for k in opts.scenarios.split(",") if k]:
        say(f"[{kind}] change after {opts.pre_s:.0f}s, then {opts.post_s:.0f}s")
        post = opts.post_s + (opts.gradual_span_s if kind == "gradual" else 0)
        s = summarise(run_one(kind, opts, thresholds, opts.pre_s, post), window_ms, opts.rate)
        results["scenarios"].append(s)
        det = ", ".join(f"{stage}: {d['delay_windows']} win ({d['alert']})" for stage, d in
                        sorted(s["detections"].items(), key=lambda kv: kv[1]["window_end"])) or "no detection"
        say(f"[{kind}] first: {s['first_stage']}; {det}; false alarms before: {s['false_alarms_before_change']}")
        Path(opts.out).write_text(json.dumps(results, indent=1, default=str))
    Path(opts.out).write_text(json.dumps(results, indent=1, default=str))
    say(f"results written to {opts.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
