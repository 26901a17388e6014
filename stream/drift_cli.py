"""`stream drift ...`: calibrate thresholds from a stationary run, reset the reference."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import yaml

from stream.adapters.kafka import read
from stream.cliargs import count, number, out_file
from stream.config import Settings
from stream.core.drift import calibrate
from stream.errors import StreamError
from stream.model_cli import publish_control
from stream.serde import SchemaRegistry
from stream.stack import bootstrap_servers
from stream.stages.drift import REPORT_TOPICS
from stream.drift_setup import STAGES, read_thresholds


def stationary_values(bootstrap: str, serde: SchemaRegistry, alerting: tuple[str, ...], since_ms: int = 0,
                      until_ms: int | None = None, min_samples: int = 0,
                      timeout_s: float = 30.0) -> tuple[dict[tuple[str, str, str], list[float]], int]:
    """Every alerting statistic's values in the drift reports on the broker: windows from
    ``since_ms`` to ``until_ms``, with at least ``min_samples`` values (smaller windows never alarm)."""
    values: dict[tuple[str, str, str], list[float]] = {}
    windows: set[tuple[str, int]] = set()
    deadline = time.monotonic() + timeout_s
    for topic in REPORT_TOPICS.values():
        for m in read(bootstrap, topic, idle_timeout=1.0, deadline=deadline):
            r = serde.decode("DriftReport", m.value)
            if (r["window_start"] < since_ms or (until_ms is not None and r["window_end"] > until_ms)
                    or r["statistic"] not in alerting or r["sample_size"] < min_samples):
                continue
            values.setdefault((r["stage"], r["quantity"], r["statistic"]), []).append(r["value"])
            windows.add((r["stage"], r["window_start"]))
    return values, len({w for _, w in windows})


def drift_status(settings: Settings) -> dict:
    """Whether the drift worker would alarm with these settings, and on which thresholds."""
    d = settings.drift
    if d.thresholds_file:
        table = read_thresholds(Path(d.thresholds_file))
        return {"state": "calibrated", "thresholds_file": d.thresholds_file, "thresholds": len(table),
                "alarms": "on"}
    if not d.require_calibration:
        return {"state": "uncalibrated", "alarms": "on, at the default thresholds (drift.require_calibration false)"}
    return {"state": "calibrating", "alarms": "off: values reported with calibrated=false, no alert",
            "next": "run a stationary stream through the drift worker, then `stream drift calibrate --out F` "
                    "and set STREAM_DRIFT_THRESHOLDS_FILE=F"}


def write_thresholds(path: Path, table: dict[str, dict], windows: int, target_run_windows: float,
                     window_s: float) -> float:
    """Write a calibration as the thresholds file the drift worker reads; returns the expected
    false alarms per day at that target."""
    per_day = 86_400 / window_s / target_run_windows
    out = {"calibrated": {"windows": windows, "target_run_windows": target_run_windows,
                          "expected_false_alarms_per_day": round(per_day, 4),
                          "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())},
           "thresholds": {k: {key: round(v, 6) for key, v in e.items()} for k, e in table.items()}}
    path.write_text(yaml.safe_dump(out, sort_keys=True))
    return per_day


def cmd_drift(args: argparse.Namespace, settings: Settings) -> int:
    if args.drift_command == "status":
        for key, value in drift_status(settings).items():
            print(f"{key:16s} {value}")
        return 0
    bootstrap = bootstrap_servers(settings)
    serde = SchemaRegistry(settings.paths.schemas_dir)
    if args.drift_command == "reset-reference":
        bad = set(args.stage or ()) - set(STAGES)
        if bad:
            raise StreamError(f"unknown drift stage(s) {', '.join(sorted(bad))}; stages: {', '.join(STAGES)}")
        stages = ",".join(args.stage or STAGES)
        publish_control(serde, bootstrap, settings.model.name, "PIN_REFERENCE", args={"stages": stages})
        print(f"drift reference reset requested for {stages} (published on control.v1); the next "
              f"{settings.drift.reference_windows} windows form the new reference")
        return 0
    values, windows = stationary_values(bootstrap, serde, settings.drift.alerting, args.since_ms, args.until_ms,
                                        settings.drift.min_samples)
    if windows < args.min_windows:
        raise StreamError(f"only {windows} drift windows on the broker (need {args.min_windows}): run the "
                          f"drift worker over a stationary stream for longer")
    table = calibrate(values, args.target_run_windows)
    per_day = write_thresholds(Path(args.out), table, windows, args.target_run_windows, settings.drift.window_s)
    for key, e in table.items():
        print(f"{key:<48} threshold {e['threshold']:.4g}  (stationary max {e['max']:.4g}, median "
              f"{e['median']:.4g}, {e['windows']} values)")
    print(f"{len(table)} thresholds from {windows} stationary windows written to {args.out}; "
          f"use them with STREAM_DRIFT_THRESHOLDS_FILE={args.out}")
    print(f"expected false alarms at this target: {per_day:.2g} per day across all {len(table)} statistics "
          f"(one per {args.target_run_windows:g} windows of {settings.drift.window_s:g} s; "
          f"per statistic and window {next(iter(table.values()), {}).get('alpha', 0.0):.2g})")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    dp = sub.add_parser("drift", help="calibrate drift thresholds; reset the drift reference",
                        description="Drift monitoring controls (the drift worker runs with `stream worker --stages drift`).")
    dsub = dp.add_subparsers(dest="drift_command", metavar="ACTION", required=True)
    sp = dsub.add_parser("calibrate", help="thresholds from a stationary run, for a target false-alarm rate",
                         description="Read the drift reports of a run the operator knows was stationary and set "
                                     "each alerting statistic's threshold so that one false alarm is expected per "
                                     "TARGET_RUN_WINDOWS windows across all of them (Bonferroni over the statistics; each "
                                     "threshold from an exponential fit of its upper tail, never below the "
                                     "largest value seen). Writes a YAML thresholds file and says the expected "
                                     "false alarms per day.")
    sp.add_argument("--target-run-windows", type=number(1), default=1000.0,
                    help="expected windows between false alarms over all statistics (default 1000)")
    sp.add_argument("--out", type=out_file, default="drift-thresholds.yaml", help="file to write (default drift-thresholds.yaml)")
    sp.add_argument("--since-ms", type=count(0), default=0, help="only windows starting at or after this epoch ms")
    sp.add_argument("--until-ms", type=count(0), default=None, help="only windows ending at or before this epoch ms")
    sp.add_argument("--min-windows", type=count(1), default=20, help="refuse with fewer stationary windows (default 20)")
    dsub.add_parser("status", help="calibrating or calibrated: whether the drift worker raises alarms",
                    description="Say whether drift alarms are on: only with a calibrated thresholds file "
                                "(drift.thresholds_file), unless drift.require_calibration is false.")
    sp = dsub.add_parser("reset-reference", help="the next windows form a new reference (after a deliberate change)",
                         description="Publish PIN_REFERENCE on control.v1: the drift worker forgets the reference "
                                     "of the given stages (default all) and takes the next windows as the new one.")
    sp.add_argument("--stage", action="append", help=f"one of {', '.join(STAGES)} (repeatable; default all)")
    dp.set_defaults(handler=cmd_drift)
