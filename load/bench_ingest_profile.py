"""Benchmark: ingest+profile events/s for this project's worker vs baselines, in one run.

For each input shape (ClickBatch envelopes of 100, single events) on a fresh embedded
stack: produce N events to clicks.v1, then measure
  (a) `stream worker` (this project), from the first processed event to the last,
      by polling its Prometheus counters;
  (b) a tutorial-style Faust app, (c) a raw confluent-kafka + fastavro loop and
  (d) a bare Faust pass-through agent on the same topic (load/baselines.py).
Then, on a fresh stack, the worker under a steady load at half its measured maximum
(batches with a 5 ms linger): event-time lag quantiles from monitor.profile.v1, and
the table's bytes per profile.

    python -m load.bench_ingest_profile --events 200000 --users 1000 --out docs/bench-ingest-profile.json
"""

from __future__ import annotations

import argparse
import json
import os
import select
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from stream.adapters.kafka import ensure_topology, producer, read
from stream.config import Settings
from stream.loadgen import build_schedule, play_schedule, produce_workload
from stream.monitor import events_sample, sample_value, scrape
from stream.serde import SchemaRegistry
from stream.stack import Stack, free_port, stop_pid
from stream.topology import Topology
from stream.workload import Workload

from load import baselines

TOPOLOGY = Topology.load()
WORKER_ENV: dict[str, str] = {}  # --worker-env NAME=VALUE settings for the measured worker
CLICKS = TOPOLOGY.topic("clicks.v1")


def say(msg: str) -> None:
    print(f"bench: {msg}", file=sys.stderr, flush=True)


class Env:
    """A fresh embedded stack with every topic created; stopped on exit."""

    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="bench-")
        self.stack = Stack(Settings.load(env={"STREAM_STACK_STATE_DIR": self.dir}))

    def __enter__(self) -> "Env":
        procs, _ = self.stack.up()
        self.bootstrap, self.redis = procs["broker"].endpoint, procs["redis"].endpoint
        ensure_topology(self.bootstrap, TOPOLOGY)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stack.down()

    def worker(self, stages: str, extra_env: dict[str, str] | None = None) -> tuple[object, int]:
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("STREAM_")}
        env.update({"STREAM_KAFKA_BOOTSTRAP_SERVERS": self.bootstrap, "STREAM_REDIS_URL": self.redis,
                    "STREAM_STACK_STATE_DIR": self.dir, "STREAM_MONITOR_INTERVAL_S": "1", **WORKER_ENV,
                    **(extra_env or {})})
        log = open(Path(self.dir) / "worker.log", "ab")
        proc = subprocess.Popen([sys.executable, "-m", "stream.cli", "worker", "--web-port", str(port),
                                 "--worker-id", "bench", "--stages", stages], env=env, stdout=log,
                                stderr=subprocess.STDOUT)
        return proc, port


def counter(port: int, stage: str = "ingest", outcome: str = "in") -> float | None:
    """An events counter of the worker; None while it does not answer."""
    text = scrape(port)
    return None if text is None else sample_value(text, events_sample(stage, outcome))


#: seconds between scrapes of the measured worker while it runs: a scrape costs its event
#: loop ~3 ms (polling every 20 ms took ~8% of its main thread, profiled with py-spy), so it
#: is scraped often only to catch its first event and its last 5%
POLL_S, POLL_EDGE_S = 0.5, 0.02


def _next_poll(first: tuple[float, float] | None, now: float, v: float, events: int) -> float:
    """Seconds to the next scrape: short until the first event and from 95% of them on,
    long between (but never past the 95% mark at the rate seen so far)."""
    if first is None or v >= 0.95 * events:
        return POLL_EDGE_S
    rate = (v - first[1]) / (now - first[0]) if now > first[0] else 0.0
    to_tail = (0.95 * events - v) / rate if rate > 0 else POLL_S
    return max(POLL_EDGE_S, min(POLL_S, to_tail))


def measure_worker(env: Env, events: int, timeout_s: float, stages: str) -> dict:
    """Events/s of `stream worker` over pre-produced input, from its first to its last event."""
    proc, port = env.worker(stages)
    try:
        deadline = time.monotonic() + timeout_s
        first = None
        while time.monotonic() < deadline:
            v = counter(port)
            now = time.monotonic()
            if v and first is None:
                first = (now, v)
            if v is not None and v >= events:
                seconds = now - first[0]
                return {"events": int(v - first[1]), "seconds": round(seconds, 3),
                        "events_per_s": round((v - first[1]) / seconds) if seconds else None}
            time.sleep(_next_poll(first, now, v or 0, events))
        raise RuntimeError(f"worker did not finish {events} events in {timeout_s}s")
    finally:
        stop_pid(proc.pid, 20)


def throughput(shape: str, args: argparse.Namespace) -> dict:
    batch = 100 if shape == "batch100" else 0
    n = args.events if batch else args.single_events
    with Env() as env:
        say(f"{shape}: producing {n:,} events")
        produce_workload(producer(env.bootstrap), CLICKS, Workload(seed=args.seed, users=args.users, rate=50_000), events=n,
                         batch_size=batch)
        out = {"stream_worker": measure_worker(env, n, args.timeout, args.stages)}
        say(f"{shape}: stream worker {out['stream_worker']['events_per_s']:,} events/s")
        runs = {"tutorial_faust": baselines.run_tutorial_faust, "raw_loop": baselines.run_raw_loop,
                "faust_passthrough": baselines.run_faust_passthrough}
        for name, fn in ({} if args.no_baselines else runs).items():
            if name == "tutorial_faust" and n > args.tutorial_events_cap:
                out[name] = {"skipped": f"more than {args.tutorial_events_cap} events (it runs ~1k/s)"}
                continue
            out[name] = fn(env.bootstrap, CLICKS.name, n, CLICKS.partitions, args.timeout)
            say(f"{shape}: {name} {out[name].get('events_per_s')} events/s")
    return out


def passthrough_pairs(args: argparse.Namespace) -> list[dict]:
    """``--pairs`` more runs of the worker and the Faust pass-through on single events, each
    pair on a fresh stack, back to back: this machine's speed drifts by 30% and more between
    minutes, so one pair is one sample of the ratio, not the ratio."""
    out = []
    for i in range(args.pairs):
        with Env() as env:
            n = args.single_events
            produce_workload(producer(env.bootstrap), CLICKS, Workload(seed=args.seed, users=args.users, rate=50_000),
                             events=n)
            ours = measure_worker(env, n, args.timeout, args.stages)["events_per_s"]
            theirs = baselines.run_faust_passthrough(env.bootstrap, CLICKS.name, n, CLICKS.partitions,
                                                     args.timeout)["events_per_s"]
        out.append({"stream_worker": ours, "faust_passthrough": theirs, "ratio": round(ours / theirs, 3)})
        say(f"pair {i + 1}/{args.pairs}: stream worker {ours:,}/s, pass-through {theirs:,.0f}/s, "
            f"ratio {out[-1]['ratio']}")
    return out


def floor_reader() -> tuple[str, int]:
    """The measured worker's client for clicks.v1 (stream.app.native) and its fetch wait."""
    f = Settings.load(env={k: v for k, v in WORKER_ENV.items() if k.startswith("STREAM_")}).faust
    return "librdkafka", f.native_fetch_wait_ms


def transport_floor(rate: float, args: argparse.Namespace) -> dict:
    """The latency run's load read by a bare consumer with the worker's client, on a fresh stack
    (load/lag_floor.py, its own process): the lag the broker and the producer add alone. As
    long as the latency run: Tansu slows down as its log grows (a bare consumer's window p99
    went from 15 ms to 50 ms after 13 s and to 900 ms after 28 s at 13k events/s), so only
    windows at the same point of a run compare."""
    seconds = args.latency_seconds
    n = int(rate * seconds)
    client, fetch_wait_ms = floor_reader()
    with Env() as env:
        proc = subprocess.Popen([sys.executable, "-m", "load.lag_floor", "--bootstrap", env.bootstrap, "--events",
                                 str(n), "--timeout", str(seconds + 30), "--client", client,
                                 "--fetch-wait-ms", str(fetch_wait_ms)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, start_new_session=True)
        try:
            ready, _, _ = select.select([proc.stderr], [], [], 60)
            if not ready or "ready" not in proc.stderr.readline():
                raise RuntimeError("load.lag_floor did not start within 60 s")
            schedule = paced_load(n, rate, args)
            say(f"floor: {n:,} events at {rate:,.0f}/s read by a bare {client} consumer ({fetch_wait_ms} ms fetch wait)")
            played = play_schedule(producer(env.bootstrap), CLICKS.name, schedule)
            result = baselines._read_result("lag_floor", proc, seconds + 40)
            if result is not None:
                result["producer_late_ms_max"] = round(played.late_ms_max, 1)
        finally:
            baselines._stop(proc, 10)
    if result is None:
        raise RuntimeError("load.lag_floor gave no result")
    return result


def paced_load(events: int, rate: float, args: argparse.Namespace) -> list:
    """The latency runs' load, made and encoded before it is sent: sending it costs the
    producer a few percent of a core, so the lag measured is the consumer's, not the load
    generator's CPU (making events as it sends took ~60% of one of the 2 cores)."""
    return build_schedule(Workload(seed=args.seed + 1, users=args.users, rate=rate, start_ms=0), CLICKS,
                          events=events, batch_size=100, linger_ms=5)


def latency(rate: float, args: argparse.Namespace) -> dict:
    """The worker under a steady load: event-time lag quantiles and table bytes per profile."""
    reg = SchemaRegistry.default()
    with Env() as env:
        proc, port = env.worker(args.stages)
        try:
            deadline = time.monotonic() + 60
            while counter(port) is None and time.monotonic() < deadline:
                time.sleep(0.2)
            time.sleep(4)  # group join
            n = int(rate * args.latency_seconds)
            schedule = paced_load(n, rate, args)
            say(f"latency: {n:,} events at {rate:,.0f}/s (batches of up to 100, 5 ms linger, made in advance)")
            stats = play_schedule(producer(env.bootstrap), CLICKS.name, schedule)
            time.sleep(3)
        finally:
            stop_pid(proc.pid, 20)
        records = [reg.decode("StageMetrics", m.value) for m in read(env.bootstrap, "monitor.profile.v1",
                                                                        idle_timeout=2)]
    busy = [r for r in records if r["events_out"] > rate * 0.5][1:-1]  # steady windows only
    p99s = [r["event_lag_ms"]["p99"] for r in busy]
    table = max((r["outputs"].get("table_bytes_per_profile", 0) for r in records), default=0)
    entries = max((r["outputs"].get("table_entries", 0) for r in records), default=0)
    return {"rate": rate, "events": stats.events, "achieved_rate": round(stats.events / stats.seconds),
            "producer_late_ms_max": round(stats.late_ms_max, 1), "messages": stats.messages,
            "windows": len(busy), "event_lag_p50_ms_median": round(statistics.median(
                [r["event_lag_ms"]["p50"] for r in busy]), 2) if busy else None,
            "event_lag_p99_ms_median": round(statistics.median(p99s), 2) if p99s else None,
            "event_lag_p99_ms_max": round(max(p99s), 2) if p99s else None,
            "processing_p99_ms_max": round(max(r["processing_ms"]["p99"] for r in busy), 3) if busy else None,
            "table_entries": entries, "table_bytes_per_profile": round(table),
            "cut_ms_max": [round(r["outputs"].get("cut_ms_max", 0), 1) for r in busy],
            "gc_pause_ms_max": [round(r["outputs"].get("gc_pause_ms_max", 0), 1) for r in busy],
            "event_lag_p99_ms": [round(p, 1) for p in p99s]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--events", type=int, default=200_000, help="events for the batch runs")
    p.add_argument("--single-events", type=int, default=30_000, help="events for the single-event runs")
    p.add_argument("--users", type=int, default=1000)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--timeout", type=float, default=300)
    p.add_argument("--tutorial-events-cap", type=int, default=60_000)
    p.add_argument("--latency-seconds", type=float, default=20)
    p.add_argument("--latency-rate", type=float, default=0,
                   help="events/s of the latency run (default: half the batch100 rate just measured)")
    p.add_argument("--shapes", default="batch100,single", help="batch100 and/or single, comma-separated ('' for none)")
    p.add_argument("--stages", default="ingest,profile", help="stages the worker runs (issue 3: ingest,profile)")
    p.add_argument("--no-baselines", action="store_true", help="measure only this project's worker")
    p.add_argument("--pairs", type=int, default=0,
                   help="then this many more (worker, Faust pass-through) pairs on single events, for the ratio")
    p.add_argument("--out", help="write the results as JSON here")
    p.add_argument("--worker-env", action="append", default=[], metavar="NAME=VALUE",
                   help="a STREAM_* setting for the measured worker (repeatable)")
    args = p.parse_args(argv)
    WORKER_ENV.update(kv.split("=", 1) for kv in args.worker_env)
    results: dict = {"date": time.strftime("%Y-%m-%d"), "cores": os.cpu_count(), "args": vars(args)}
    shapes = [x for x in args.shapes.split(",") if x]
    if set(shapes) - {"batch100", "single"}:
        p.error(f"--shapes takes batch100 and/or single (or nothing), not {args.shapes!r}")
    for shape in shapes:
        results[shape] = throughput(shape, args)
    if args.latency_rate > 0:
        results["latency_at_rate"] = latency(args.latency_rate, args)
        results["latency_floor_at_rate"] = transport_floor(args.latency_rate, args)
    elif "batch100" in results:
        half = results["batch100"]["stream_worker"]["events_per_s"] / 2
        results["latency_at_half_max"] = latency(half, args)
        results["latency_floor_at_half_max"] = transport_floor(half, args)
    if "single" in results and results["single"].get("faust_passthrough", {}).get("events_per_s"):
        results["single_vs_passthrough"] = round(results["single"]["stream_worker"]["events_per_s"]
                                                 / results["single"]["faust_passthrough"]["events_per_s"], 3)
    if args.pairs:
        results["single_pairs"] = passthrough_pairs(args)
        results["single_vs_passthrough_median"] = statistics.median(p["ratio"] for p in results["single_pairs"])
    text = json.dumps(results, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
