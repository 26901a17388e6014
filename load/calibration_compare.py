"""Offline: thresholds of the upper-tail calibration against the earlier log-normal fit, on the
stationary drift values a drift evaluation recorded (``stationary.values`` of its JSON).

    python -m load.calibration_compare docs/drift-results.json [--target-run-windows 1000]

Prints, per statistic, the largest stationary value and each method's threshold as a multiple
of it (a threshold far above every stationary value misses real changes).
"""

from __future__ import annotations

import argparse
import json
from statistics import NormalDist

import numpy as np

from stream.core.drift import COUNTS, calibrate


def lognormal_threshold(values: list[float], alpha: float, top: float, floor: float = 1.05) -> float:
    """The calibration before 2026-12-02: a normal fit of ln(value), its 1 - alpha quantile."""
    arr = np.asarray([v for v in values if v > 0], dtype=float)
    if len(arr) < 5:
        return top
    logs = np.log(arr)
    return max(float(np.exp(logs.mean() + NormalDist().inv_cdf(1 - alpha) * logs.std(ddof=1))), top * floor)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("results", help="a drift evaluation's JSON (load/drift_eval.py --out)")
    p.add_argument("--target-run-windows", type=float, default=1000.0)
    args = p.parse_args(argv)
    recorded = json.load(open(args.results))["stationary"]["values"]
    values = {tuple(k.split("/")): v for k, v in recorded.items()}
    table = calibrate(values, args.target_run_windows)
    merged: dict[str, list[float]] = {}
    for (stage, quantity, statistic), vs in values.items():
        merged.setdefault(f"{stage}/{quantity.split('[', 1)[0]}/{statistic}", []).extend(vs)
    rows = []
    for key, e in table.items():
        if key.rsplit("/", 1)[1] in COUNTS or e["max"] <= 0:
            continue
        old = lognormal_threshold(merged[key], e["alpha"], e["max"])
        rows.append((old / e["max"], key, e))
    print(f"{'statistic':40s} {'windows':>7s} {'max':>8s} {'log-normal':>16s} {'upper tail':>16s}")
    for ratio, key, e in sorted(rows, reverse=True):
        print(f"{key:40s} {e['windows']:7d} {e['max']:8.4f} {e['max'] * ratio:9.4f} ({ratio:4.1f}x) "
              f"{e['threshold']:9.4f} ({e['threshold'] / e['max']:4.1f}x)")
    worst_old = max(r[0] for r in rows)
    worst_new = max(r[2]["threshold"] / r[2]["max"] for r in rows)
    print(f"largest threshold / stationary max: log-normal {worst_old:.1f}x, upper tail {worst_new:.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
