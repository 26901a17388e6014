"""Drift on a real log: the drift monitor's own code over a replayed interaction log, as it is
and with changes injected at a known time.

Each scenario replays the log through the pipeline's stage code (``stream replay
--in-process``: ingest, retrieve, profile, feedback, score, the learner) and records what the
drift worker reads (input events, profiles, recommendations, feedback). The four stage
monitors (:class:`~stream.core.drift_monitor.StageDrift`, with ADWIN and Page-Hinkley on the
online loss, as the drift worker runs them) then window those records by event time.

Protocol:

1. ``as_is``: the log unchanged. Its windows before the calibration point (half of the log's
   events) calibrate the thresholds (:func:`stream.core.drift.calibrate`, the same code as
   ``stream drift calibrate``, for one false alarm per ``--target-run-windows`` windows); the
   windows after it, at those thresholds, count the false alarms on data the calibration did
   not see.
2. Each change, injected at the change point (``--change-at``, 0.75 of the events): alarms
   raised after the calibration point and before the change are false alarms; the first alarm
   at or after the change gives the detection delay in windows (0: in the window holding the
   change point; a gradual change is timed from its midpoint).

   - ``popularity_swap`` (sudden): from the change on, the i-th most interacted item of the
     log is replaced by the i-th least interacted one and back (with its category);
   - ``user_mix`` (gradual): over ``--gradual-windows`` windows centred on the change point the
     users with the higher share of positives are dropped with a probability rising from 0 to 1;
   - ``field_break`` (upstream field broken): from the change on, the category arrives empty
     (a log with categories) or the rating arrives as 0, so every event is a view (without).

    python -m load.drift_real data/ml-100k.csv --positive-min-rating 4 --out docs/drift-real-ml-100k.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pickle
import random
import sys
import time
from collections import Counter
from pathlib import Path

from stream.config import Settings
from stream.core.drift import calibrate
from stream.core.drift_monitor import DEFAULT_ALERTING, DriftConfig, StageDrift, Thresholds, river_detectors
from stream.core.drift_quantities import concept_values, input_values, prediction_values, profile_values
from stream.replay.inprocess import run_in_process
from stream.replay.log import Interaction, open_log

SCENARIOS = ("as_is", "popularity_swap", "user_mix", "field_break")
EXTRACTORS = {"input": input_values, "profiles": profile_values, "predictions": prediction_values,
              "concept": concept_values}
TOPIC_STAGE = {"clicks.v1": "input", "profiles.v1": "profiles", "recommendations.v1": "predictions",
               "feedback.v1": "concept"}
TIME_FIELD = {"input": "timestamp", "profiles": "last_seen", "predictions": "created", "concept": "served_at"}
#: window lengths tried by ``--window auto``, shortest first
AUTO_WINDOWS_S = (600, 3600, 6 * 3600, 86400, 7 * 86400)


def say(text: str) -> None:
    print(f"drift_real: {text}", file=sys.stderr, flush=True)


def auto_window_ms(rows: list[Interaction], min_events: int) -> int:
    """The shortest window whose median window holds at least ``min_events`` events."""
    for w in AUTO_WINDOWS_S:
        counts = sorted(Counter(r.ts_ms // (w * 1000) for r in rows).values())
        if counts[len(counts) // 2] >= min_events:
            return w * 1000
    return AUTO_WINDOWS_S[-1] * 1000


def quantile_ts(rows: list[Interaction], q: float) -> int:
    return rows[min(len(rows) - 1, int(q * len(rows)))].ts_ms


def inject(rows: list[Interaction], kind: str, t_change: int, ramp_ms: int, seed: int) -> list[Interaction]:
    """The log with one change from ``t_change`` (a gradual one ramps over ``ramp_ms`` centred on it)."""
    if kind == "as_is":
        return rows
    if kind == "popularity_swap":
        ranked = [item for item, _ in Counter(r.item for r in rows).most_common()]
        swap = dict(zip(ranked, reversed(ranked)))
        cat = {}
        for r in rows:
            cat.setdefault(r.item, r.category)
        return [dataclasses.replace(r, item=swap[r.item], category=cat[swap[r.item]]) if r.ts_ms >= t_change else r
                for r in rows]
    if kind == "user_mix":
        pos, n = Counter(), Counter()
        for r in rows:
            n[r.user] += 1
            pos[r.user] += r.rating is None or r.rating >= 4
        share = {u: pos[u] / n[u] for u in n}
        cut = sorted(share.values())[len(share) // 2]
        rng, start = random.Random(seed), t_change - ramp_ms // 2
        return [r for r in rows
                if share[r.user] <= cut or rng.random() >= min(1.0, max(0.0, (r.ts_ms - start) / ramp_ms))]
    if kind == "field_break":
        has_categories = any(r.category for r in rows)
        return [(dataclasses.replace(r, category=None) if has_categories else dataclasses.replace(r, rating=0.0))
                if r.ts_ms >= t_change else r for r in rows]
    raise ValueError(f"unknown scenario {kind!r}")


def record(rows: list[Interaction], min_rating: float | None, settings: Settings) -> dict[str, list]:
    """What the drift worker would read, per stage: (event time, record), in event-time order."""
    out: dict[str, list] = {stage: [] for stage in EXTRACTORS}

    def observe(topic: str, rec: dict) -> None:
        stage = TOPIC_STAGE.get(topic)
        if stage is None:
            return
        if stage == "concept":
            rec = {k: rec[k] for k in ("score", "label", "variant", "served_at")}
        elif stage == "predictions":
            rec = {"variant": rec.get("variant"), "created": rec["created"],
                   "items": [{"score": i["score"], "category": i.get("category")} for i in rec.get("items") or []]}
        out[stage].append((rec[TIME_FIELD[stage]], rec))

    run_in_process(rows, min_rating, settings, on_recommendation=lambda rec: None, observe=observe)
    for recs in out.values():
        recs.sort(key=lambda x: x[0])
    return out


def monitor(records: dict[str, list], cfg: DriftConfig, thresholds: Thresholds) -> tuple[list[dict], list[dict]]:
    """Every stage monitor over the records: (reports, alerts)."""
    reports, alerts = [], []
    for stage, recs in records.items():
        mon = StageDrift(stage, EXTRACTORS[stage], cfg, thresholds,
                         detectors=river_detectors() if stage == "concept" else None)
        for k, (ts, rec) in enumerate(recs):
            mon.update(rec, ts)
            if k % 200 == 0:
                r, a = mon.close(ts)
                reports += r
                alerts += a
        r, a = mon.close(recs[-1][0] + 10 * cfg.window_ms if recs else 0)
        reports += r
        alerts += a
    return reports, alerts


def raised(alerts: list[dict]) -> list[dict]:
    return sorted((a for a in alerts if not a["name"].endswith(".cleared")), key=lambda a: a["created"])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("log")
    p.add_argument("--positive-min-rating", type=float, default=None)
    p.add_argument("--window", default="auto", help="window length in seconds, or auto (see AUTO_WINDOWS_S)")
    p.add_argument("--min-samples", type=int, default=200, help="a window with fewer values never alarms")
    p.add_argument("--calibrate-until", type=float, default=0.5, help="share of the events that calibrate")
    p.add_argument("--change-at", type=float, default=0.75, help="share of the events before the change")
    p.add_argument("--gradual-windows", type=int, default=6, help="windows a gradual change ramps over")
    p.add_argument("--target-run-windows", type=float, default=500.0)
    p.add_argument("--scenarios", default=",".join(SCENARIOS))
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--limit", type=int, default=None, help="the log's first N rows only")
    p.add_argument("--trailing", type=int, default=0, help="drift.trailing_windows (0: a fixed reference)")
    p.add_argument("--cache", default=None, help="keep each scenario's recorded stream here (pickle) and reuse it")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    rows = open_log(args.log, limit=args.limit)
    window_ms = auto_window_ms(rows, 2 * args.min_samples) if args.window == "auto" else int(float(args.window) * 1000)
    cfg = DriftConfig(window_ms=window_ms, grace_ms=0, min_samples=args.min_samples, trailing=args.trailing)
    t_cal, t_change = quantile_ts(rows, args.calibrate_until), quantile_ts(rows, args.change_at)
    change_window = t_change // window_ms * window_ms
    settings = Settings.load(env={})
    say(f"{args.log}: {len(rows):,} interactions, windows of {window_ms / 1000:,.0f} s; calibration until "
        f"{t_cal}, change at {t_change}")
    results: dict = {"log": args.log, "window_s": window_ms / 1000, "trailing_windows": args.trailing, "min_samples": args.min_samples,
                     "target_run_windows": args.target_run_windows, "calibrate_until_ms": t_cal,
                     "change_at_ms": t_change, "scenarios": {}}
    thresholds = None
    for kind in args.scenarios.split(","):
        t0 = time.monotonic()
        changed = inject(rows, kind, t_change, args.gradual_windows * window_ms, args.seed)
        cached = Path(args.cache) / f"{Path(args.log).stem}-{args.limit}-{kind}.pickle" if args.cache else None
        if cached is not None and cached.exists():
            recs = pickle.loads(cached.read_bytes())
        else:
            recs = record(changed, args.positive_min_rating, settings)
            if cached is not None:
                cached.parent.mkdir(parents=True, exist_ok=True)
                cached.write_bytes(pickle.dumps(recs))
        if thresholds is None:  # the first scenario is as_is: calibrate on its first part
            reports, _ = monitor(recs, cfg, Thresholds(calibrated=False))
            values: dict = {}
            for r in reports:
                if r["window_end"] <= t_cal and r["statistic"] in DEFAULT_ALERTING and r["sample_size"] >= cfg.min_samples:
                    values.setdefault((r["stage"], r["quantity"], r["statistic"]), []).append(r["value"])
            table = calibrate(values, args.target_run_windows)
            thresholds = Thresholds({k: v["threshold"] for k, v in table.items()})
            results["calibration"] = {"windows": len({r["window_start"] for r in reports if r["window_end"] <= t_cal}),
                                      "thresholds": {k: round(v["threshold"], 4) for k, v in table.items()}}
        reports, alerts = monitor(recs, cfg, thresholds)
        evaluated = sorted({r["window_start"] for r in reports if r["window_start"] >= t_cal})
        up = [a for a in raised(alerts) if a["created"] > t_cal]
        before = [a for a in up if int(a["evidence"]["window_start"]) < change_window]
        after = [a for a in up if int(a["evidence"]["window_start"]) >= change_window]
        out = {"events": len(changed), "windows_after_calibration": len(evaluated),
               "windows_before_change": len([w for w in evaluated if w < change_window]),
               "false_alarms_before_change": len(before), "false_alarm_names": [a["name"] for a in before][:10],
               "seconds": round(time.monotonic() - t0, 1)}
        if kind != "as_is":
            first = after[0] if after else None
            out["detection_delay_windows"] = (int(first["evidence"]["window_start"]) - change_window) // window_ms \
                if first else None
            out["first_alarms"] = [a["name"] for a in after[:5]]
        else:
            out["false_alarms_after_calibration"] = len(up)
        results["scenarios"][kind] = out
        say(f"{kind}: {json.dumps(out)}")
    text = json.dumps(results, indent=2)
    if args.out:
        Path(args.out).write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
