"""``stream top``: a live terminal view of the pipeline, from the stages' monitoring streams.

Every worker publishes one StageMetrics record per stage and monitor interval on
``monitor.<stage>.v1``. The board keeps each (stage, worker)'s latest record and shows, per
stage: workers, events in and out per second, the reject share, consumer lag in events (a
worker that does not know its lag is left out, not summed as -1), the p99 time per Kafka
message and the p99 event-time lag, readiness; then the champion model's rolling metrics per
slice of traffic (what each variant served),
the rollout state and the drift monitor's alarms. A record older than three of its intervals
counts as gone (its worker stopped).

>>> b = Board()
>>> b.add({"stage": "ingest", "worker": "w1", "emitted_at": 10_000, "interval_s": 5.0, "events_in": 5000,
...        "events_out": 4900, "rejected": 100, "processing_ms": {"p99": 2.5}, "event_lag_ms": {"p99": 40.0},
...        "consumer_lag": 3, "outputs": {"consumer_lag_events": 300.0, "ready": 1.0}})
>>> row = b.stages(now_ms=12_000)[0]
>>> row["stage"], row["workers"], row["in_per_s"], row["reject_share"], row["lag_events"]
('ingest', 1, 1000.0, 0.02, 300)
>>> b.stages(now_ms=40_000)  # three intervals later: gone
[]
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any, Iterable, TextIO

from stream.monitor import gauge_labels

STAGE_ORDER = ("ingest", "profile", "feedback", "score", "learn", "rollout", "drift")
MODEL_METRICS = ("log_loss", "auc", "ctr", "examples")


def stage_key(stage: str) -> tuple[int, str]:
    """Pipeline order, unknown stages last."""
    return STAGE_ORDER.index(stage) if stage in STAGE_ORDER else 99, stage


class Board:
    """The latest monitoring record of each (stage, worker)."""

    def __init__(self) -> None:
        self.latest: dict[tuple[str, str], dict] = {}

    def add(self, record: dict) -> None:
        key = (record["stage"], record["worker"])
        old = self.latest.get(key)
        if old is None or record["emitted_at"] >= old["emitted_at"]:
            self.latest[key] = record

    def live(self, now_ms: int) -> list[dict]:
        return [r for r in self.latest.values()
                if now_ms - r["emitted_at"] <= 3 * max(r.get("interval_s", 5.0), 1.0) * 1000]

    def stages(self, now_ms: int) -> list[dict]:
        by_stage: dict[str, list[dict]] = {}
        for r in self.live(now_ms):
            by_stage.setdefault(r["stage"], []).append(r)
        rows = []
        for stage in sorted(by_stage, key=stage_key):
            rs = by_stage[stage]
            seconds = [max(r.get("interval_s", 0.0), 1e-3) for r in rs]
            ins = sum(r["events_in"] / s for r, s in zip(rs, seconds))
            outs = sum(r["events_out"] / s for r, s in zip(rs, seconds))
            total_in = sum(r["events_in"] for r in rs)
            lags = [r.get("outputs", {}).get("consumer_lag_events", -1.0) for r in rs]
            known = [x for x in lags if x >= 0]
            ready = [r.get("outputs", {}).get("ready") for r in rs]
            rows.append({
                "stage": stage, "workers": len(rs), "in_per_s": round(ins, 1), "out_per_s": round(outs, 1),
                "reject_share": round(sum(r["rejected"] for r in rs) / total_in, 4) if total_in else 0.0,
                "lag_events": int(sum(known)) if known else None, "lag_unknown": len(lags) - len(known),
                "p99_ms_per_message": max((r.get("processing_ms", {}).get("p99", 0.0) for r in rs), default=0.0),
                "p99_event_lag_ms": max((r.get("event_lag_ms", {}).get("p99", 0.0) for r in rs), default=0.0),
                "ready": None if any(x is None for x in ready) else sum(1 for x in ready if x >= 1.0),
            })
        return rows

    def gauges(self, stage: str, now_ms: int) -> dict[str, float]:
        """The outputs (gauges included) of a stage's freshest live record."""
        rs = sorted((r for r in self.live(now_ms) if r["stage"] == stage), key=lambda r: r["emitted_at"])
        return dict(rs[-1].get("outputs", {})) if rs else {}

    def model(self, now_ms: int) -> dict[str, dict[str, float]]:
        """Traffic slice (champion, challenger, explore, organic) -> the champion model's rolling metrics."""
        out: dict[str, dict[str, float]] = {}
        for key, value in self.gauges("learn", now_ms).items():
            name, labels = gauge_labels(key)
            if name.startswith("model_") and "traffic" in labels:
                out.setdefault(labels["traffic"], {})[name.removeprefix("model_")] = value
        return out

    def snapshot(self, now_ms: int) -> dict[str, Any]:
        learn, rollout, drift = (self.gauges(s, now_ms) for s in ("learn", "rollout", "drift"))
        mode = {0.0: "idle", 1.0: "shadow", 2.0: "canary"}.get(rollout.get("rollout_mode", -1.0))
        return {
            "at_ms": now_ms, "stages": self.stages(now_ms), "model": self.model(now_ms),
            "model_version": int(learn["model_version"]) if "model_version" in learn else None,
            "rollout": {"mode": mode, "share": rollout.get("rollout_share")} if mode else None,
            "drift": {"alarms_active": int(drift.get("alarms_active", 0)),
                      "calibrated": bool(drift.get("drift_calibrated", 0.0))} if drift else None,
        }


def _num(x: float | None, fmt: str = "{:,.0f}") -> str:
    return "-" if x is None else fmt.format(x)


def render(snap: dict[str, Any]) -> str:
    """The snapshot as fixed-width text."""
    when = time.strftime("%H:%M:%S", time.localtime(snap["at_ms"] / 1000))
    lines = [f"stream top  {when}  (from the monitor.<stage>.v1 streams)", ""]
    head = f"{'STAGE':9s} {'WORKERS':>7s} {'IN/s':>10s} {'OUT/s':>10s} {'REJECT':>7s} {'LAG ev':>9s} " \
           f"{'p99 ms/msg':>10s} {'p99 lag ms':>10s} {'READY':>6s}"
    lines.append(head)
    if not snap["stages"]:
        lines.append("  (no monitoring record in the last intervals: is a worker running?)")
    for r in snap["stages"]:
        lag = _num(r["lag_events"]) + ("?" if r["lag_unknown"] else "")
        ready = "-" if r["ready"] is None else f"{r['ready']}/{r['workers']}"
        lines.append(f"{r['stage']:9s} {r['workers']:>7d} {r['in_per_s']:>10,.0f} {r['out_per_s']:>10,.0f} "
                     f"{r['reject_share']:>7.1%} {lag:>9s} {r['p99_ms_per_message']:>10.1f} "
                     f"{r['p99_event_lag_ms']:>10.0f} {ready:>6s}")
    if snap["model"]:
        lines += ["", f"champion model v{_num(snap['model_version'])}: rolling window per traffic slice",
                  f"  {'TRAFFIC':12s} {'LOG LOSS':>9s} {'AUC':>6s} {'CTR':>7s} {'EXAMPLES':>9s}"]
        for variant, m in sorted(snap["model"].items()):
            lines.append(f"  {variant:12s} {_num(m.get('log_loss'), '{:.4f}'):>9s} {_num(m.get('auc'), '{:.3f}'):>6s} "
                         f"{_num(m.get('ctr'), '{:.2%}'):>7s} {_num(m.get('examples')):>9s}")
    if snap["rollout"]:
        share = snap["rollout"]["share"]
        lines.append(f"rollout: {snap['rollout']['mode']}" + (f", challenger share {share:.0%}" if share else ""))
    if snap["drift"]:
        d = snap["drift"]
        lines.append(f"drift: {d['alarms_active']} alarm(s) active" +
                     ("" if d["calibrated"] else " (calibrating: alarms off until thresholds are calibrated)"))
    return "\n".join(lines)


def run(records: Iterable[dict | None], once: bool, refresh_s: float = 2.0, out: TextIO = sys.stdout,
        clock=time.time, json_out: bool = False) -> dict[str, Any]:  # noqa: ANN001
    """Fold records (None: nothing new, a chance to redraw) and draw; returns the last snapshot."""
    board, drawn = Board(), 0.0
    snap = board.snapshot(int(clock() * 1000))
    for rec in records:
        if rec is not None:
            board.add(rec)
        now = clock()
        if not once and now - drawn >= refresh_s:
            drawn = now
            snap = board.snapshot(int(now * 1000))
            out.write("\x1b[H\x1b[2J" + render(snap) + "\n")  # home, clear: one screen, redrawn
            out.flush()
    snap = board.snapshot(int(clock() * 1000))
    if once:
        out.write((json.dumps(snap, separators=(",", ":")) if json_out else render(snap)) + "\n")
    return snap
