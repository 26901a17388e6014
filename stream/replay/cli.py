"""``stream replay LOG``: judge the recommender on a real, timestamped interaction log.

Prequential protocol (:mod:`stream.replay.evaluate`) through the real pipeline (a private
embedded stack and worker, :mod:`stream.replay.pipeline`) or, with ``--in-process``, the
same stage code without the broker (:mod:`stream.replay.inprocess`); the field's simple
baselines (global popularity with consumed items left out, item co-occurrence) on the same
protocol in the same command. Nobody sees a replayed list, so a click is never an answer to
one: the served lists are not joined with clicks (no served-list labels), the model learns from
organic clicks only and does not explore.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from stream.cliargs import Progress, count, number, out_file
from stream.config import Settings
from stream.errors import StreamError
from stream.replay.evaluate import CooccurrenceBaseline, PopularityBaseline, Prequential, requests, run_baseline
from stream.replay.events import request_id
from stream.replay.log import ReplayInputError, open_log, parse_mapping


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # so the stack and workers the replay started are stopped on SIGTERM too


def cmd_replay(args: argparse.Namespace, settings: Settings) -> int:
    import signal  # noqa: PLC0415
    signal.signal(signal.SIGTERM, _interrupt)
    if args.workers > 1 and args.in_process:
        raise StreamError("--workers N: only without --in-process (there --isolated-workers N)")
    if args.isolated_workers > 1 and not args.in_process:
        raise StreamError("--isolated-workers N: only with --in-process")
    if args.plot is not None and not args.plot.lower().endswith(".png"):
        raise StreamError(f"--plot {args.plot}: the plot is a PNG file (name it *.png)")
    rows = open_log(args.file, parse_mapping(args.map or []), args.limit)
    min_rating = args.positive_min_rating
    if min_rating is not None and all(r.rating is None for r in rows):
        raise ReplayInputError(f"{args.file}: --positive-min-rating {min_rating:g} but the log has no rating column")
    evaluated = requests(rows, min_rating)
    if not evaluated:
        raise ReplayInputError(f"{args.file}: no positive interaction of a returning user: nothing to evaluate")
    users, items = len({r.user for r in rows}), len({r.item for r in rows})
    has_cat = any(r.category for r in rows)
    mode = "in-process" if args.in_process else "pipeline"
    print(f"replay: {args.file}: {len(rows):,} interactions, {users:,} users, {items:,} items, "
          f"{'with' if has_cat else 'no'} categories; {len(evaluated):,} positives evaluated; {mode}", flush=True)
    settings = settings.replace(model={"k": 10, "explore": 0.0, "served_weight": args.served_weight,
                                       "served_feedback": args.served_weight > 0,
                                       **({"policy": args.policy} if args.policy else {})})
    targets = {request_id(r): r for r in evaluated}
    ev = Prequential(10, rows[0].ts_ms, rows[-1].ts_ms, args.periods, catalogue=items)
    unknown = [0]

    def on_rec(rec: dict) -> None:
        r = targets.get(rec["request_event_id"])
        if r is None:
            unknown[0] += 1
            return
        ev.add(r.item, [it["item_id"] for it in rec["items"]], r.ts_ms)

    t0 = time.monotonic()
    if args.in_process:
        from stream.replay.inprocess import run_in_process as run  # noqa: PLC0415
    else:
        from stream.replay.pipeline import run_pipeline as run  # noqa: PLC0415
    bar = Progress("replayed events", len(rows) + len(evaluated))
    info = run(rows, min_rating, settings, on_rec, progress=bar, n_requests=len(evaluated),
               isolated_workers=args.isolated_workers, workers=args.workers)
    bar(len(rows) + len(evaluated))
    bar.done()
    seconds = time.monotonic() - t0
    summary = ev.summary()
    summary["candidate_recall"] = info["recall_hits"] / info["recall_trials"] if info.get("recall_trials") else None
    summary.update({"mode": mode, "file": args.file, "interactions": len(rows), "users": users, "items": items,
                    "categories": has_cat, "positive_min_rating": min_rating, "seconds": round(seconds, 1),
                    "events_per_s": round((len(rows) + len(evaluated)) / max(seconds, 1e-9)),
                    "policy": settings.model.policy, "model_version": info.get("model_version"),
                    "unanswered": len(evaluated) - ev.n, "dead_letters": info.get("dead_letters"),
                    "workers": info.get("workers", 1),
                    "relations_folded_remote": info.get("relations_folded_remote")})
    if not args.no_baselines:
        summary["baselines"] = {}
        for make in (PopularityBaseline, CooccurrenceBaseline):
            try:
                b = run_baseline(rows, min_rating, make(rows), periods=args.periods).summary()
            except ValueError as exc:
                print(f"replay: baseline {make.name} skipped: {exc}", file=sys.stderr)
                continue
            summary["baselines"][make.name] = {k: b[k] for k in ("hr10", "ndcg10", "mrr", "coverage", "n_eval")}
            summary["baselines"][make.name]["periods"] = [p["hr10"] for p in b["periods"]]
    _report(summary)
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=1) + "\n")
        print(f"replay: summary written to {args.json}")
    if args.plot:
        from stream.replay.plot import plot_hr  # noqa: PLC0415 - matplotlib only when asked
        plot_hr(summary, args.plot)
        print(f"replay: HR@10 over time plotted to {args.plot}")
    if summary["unanswered"]:
        print(f"stream: error: {summary['unanswered']:,} requests got no recommendation", file=sys.stderr)
        return 1
    return 0


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.4f}"


def _report(s: dict) -> None:
    print(f"replay: {s['n_eval']:,} evaluated in {s['seconds']:.1f}s ({s['events_per_s']:,} events/s), "
          f"model v{s['model_version'] or 0:.0f}")
    print(f"  {'policy':<14} {'HR@10':>7} {'NDCG@10':>8} {'MRR':>7} {'coverage':>9}")
    print(f"  {s['policy']:<14} {_fmt(s['hr10']):>7} {_fmt(s['ndcg10']):>8} {_fmt(s['mrr']):>7} "
          f"{_fmt(s['coverage']):>9}   candidate recall {_fmt(s['candidate_recall'])}")
    for name, b in s.get("baselines", {}).items():
        print(f"  {name:<14} {_fmt(b['hr10']):>7} {_fmt(b['ndcg10']):>8} {_fmt(b['mrr']):>7} {_fmt(b['coverage']):>9}")
    print("  HR@10 per period: " + " ".join(_fmt(p["hr10"]) for p in s["periods"]))


def add_parser(sub: argparse._SubParsersAction) -> None:
    sp = sub.add_parser("replay", help="judge the recommender on a real timestamped log (prequential HR@10)",
                        description=__doc__.split("\n\n")[0] + " " + __doc__.split("\n\n")[1].replace("\n", " "))
    sp.add_argument("file", help="CSV or TSV with a header naming user, item, timestamp (unix s or ms); "
                                 "optional rating, category")
    sp.add_argument("--in-process", action="store_true", help="the stage code without the broker (quick, offline)")
    sp.add_argument("--positive-min-rating", type=number(-1e300), default=None,
                    help="a row is a positive (a click) if its rating is at least this (default: every row)")
    sp.add_argument("--limit", type=count(1), default=None, help="replay only the first N rows in time order")
    sp.add_argument("--json", type=out_file, default=None, metavar="OUT", help="write the summary as JSON")
    sp.add_argument("--plot", type=out_file, default=None, metavar="OUT.png", help="plot HR@10 per period against the baselines")
    sp.add_argument("--map", action="append", metavar="ROLE=COLUMN",
                    help="name the column of a role (user, item, timestamp, rating, category); repeatable")
    sp.add_argument("--periods", type=count(1, 1000), default=10, help="equal time periods for the figures over time (10)")
    sp.add_argument("--policy", choices=("model", "retrieval", "popularity", "random"), default=None,
                    help="serving policy (default: model.policy)")
    sp.add_argument("--served-weight", type=number(0), default=0.0,
                    help="join served lists with later clicks and learn from them with this weight "
                         "(default 0: in a replay nobody sees the lists)")
    sp.add_argument("--workers", type=count(1, 64), default=1, metavar="N",
                    help="scoring workers sharing the partitions (pipeline mode; default 1)")
    sp.add_argument("--isolated-workers", type=count(1, 64), default=1, metavar="N",
                    help="with --in-process: spread the partitions over N workers that do not share item "
                         "relations (measures what sharing them is worth)")
    sp.add_argument("--no-baselines", action="store_true", help="skip the popularity and co-occurrence baselines")
    sp.set_defaults(handler=cmd_replay)
