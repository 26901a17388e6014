"""The ``stream`` command: run the embedded stack, manage topics, tail topics, run workers.

Every subcommand has ``--help``, says what it did, and exits non-zero with a one-line
reason (``stream: error: ...``) on failure. Logs go to stderr as logfmt; results to stdout.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
import time
from typing import Any, Callable, Sequence

from stream.cliargs import Progress, count, log_level, number, port
from stream.cliargs import stages as cli_stages
from stream.config import DEV_HMAC_KEY, Settings, production_problems, redact_url
from stream.errors import StreamError
from stream.stages import DEFAULT_STAGES

Handler = Callable[[argparse.Namespace, Settings], int]


def _json_default(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray)):
        return {"base64": base64.b64encode(value).decode()}
    return str(value)


def _print_json(obj: Any) -> None:
    print(json.dumps(obj, default=_json_default, separators=(",", ":")), flush=True)


# --- stack ------------------------------------------------------------------------------

def cmd_up(args: argparse.Namespace, settings: Settings) -> int:
    from stream.stack import Stack
    overrides = {}
    if args.broker_port is not None:
        overrides["broker_port"] = args.broker_port
    if args.redis_port is not None:
        overrides["redis_port"] = args.redis_port
    if overrides:
        settings = settings.replace(stack=overrides)
    procs, done = Stack(settings).up()
    for line in done:
        print(line)
    print(f"broker: {procs['broker'].endpoint}")
    print(f"redis:  {procs['redis'].endpoint}")
    print(f"state:  {settings.stack.state_dir}")
    return 0


def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    from stream.stack import Stack
    status = Stack(settings).status()
    if args.json:
        _print_json(status)
    else:
        for name, st in status.items():
            detail = ", ".join(f"{k}={v}" for k, v in st.items() if k != "state")
            print(f"{name:7s} {st['state']:12s} {detail}")
    return 0 if all(s["state"] == "running" for s in status.values()) else 3


def cmd_down(args: argparse.Namespace, settings: Settings) -> int:
    from stream.stack import Stack
    done = Stack(settings).down()
    for line in done or ["nothing was running"]:
        print(line)
    return 0


# --- topics -------------------------------------------------------------------------------

def _topology(settings: Settings):
    from stream.topology import Topology
    return Topology.load(settings.paths.topology)


def cmd_topics_create(args: argparse.Namespace, settings: Settings) -> int:
    from stream.adapters.kafka import ensure_topology
    from stream.stack import bootstrap_servers
    topology = _topology(settings)
    bootstrap = bootstrap_servers(settings)
    results = ensure_topology(bootstrap, topology)
    created = sum(r.created for r in results)
    for r in results:
        t = topology.topic(r.topic)
        state = "created" if r.created else "exists"
        note = f"  ({r.note})" if r.note else ""
        print(f"{state:8s} {t.name:28s} partitions={t.partitions} cleanup={t.cleanup}{note}")
    print(f"{created} topic(s) created, {len(results) - created} already existed, on {bootstrap}")
    wrong = [r for r in results if r.note]
    if wrong:  # a topic with other partitions than declared breaks the co-partitioning of the stages
        print(f"stream topics create: error: {len(wrong)} topic(s) exist with other partition counts than the "
              f"topology's ({', '.join(r.topic for r in wrong)}): delete and recreate them (on the embedded "
              f"stack: `stream down && stream up && stream topics create`, before any worker starts)",
              file=sys.stderr)
        return 1
    return 0


def cmd_topics_list(args: argparse.Namespace, settings: Settings) -> int:
    from stream.adapters.kafka import existing_topics
    from stream.stack import bootstrap_servers
    topology = _topology(settings)
    bootstrap = bootstrap_servers(settings)
    have = existing_topics(bootstrap)
    rows = []
    for name in sorted(set(have) | set(topology.topics)):
        declared = topology.topics.get(name)
        rows.append({"topic": name, "partitions": have.get(name),
                     "declared_partitions": declared.partitions if declared else None,
                     "schema": declared.value if declared else None,
                     "state": ("ok" if have[name] == declared.partitions else "partitions_mismatch")
                     if declared and name in have else ("missing" if declared else "undeclared")})
    if args.json:
        for row in rows:
            _print_json(row)
        return 0
    for r in rows:
        print(f"{r['topic']:32s} partitions={r['partitions'] if r['partitions'] is not None else '-':<3} "
              f"schema={r['schema'] or '-':16s} {r['state']}")
    bad = [r["topic"] for r in rows if r["state"] in ("missing", "partitions_mismatch")]
    if bad:
        print(f"stream topics list: error: {len(bad)} declared topic(s) missing or with other partition counts "
              f"than the topology's: {', '.join(bad)}", file=sys.stderr)
        return 1
    return 0


# --- tail --------------------------------------------------------------------------------

def cmd_tail(args: argparse.Namespace, settings: Settings) -> int:
    from stream.adapters.kafka import read
    from stream.errors import SerdeError
    from stream.serde import SchemaRegistry
    from stream.stack import bootstrap_servers
    topic = _topology(settings).topic(args.topic)
    registry = SchemaRegistry(settings.paths.schemas_dir)
    bootstrap = bootstrap_servers(settings)
    n = bad = 0
    for msg in read(bootstrap, topic.name, from_beginning=args.from_beginning, max_messages=args.max,
                    idle_timeout=args.idle_timeout, partitions=None):
        n += 1
        out: dict[str, Any] = {"topic": msg.topic, "partition": msg.partition, "offset": msg.offset,
                               "key": msg.key.decode(errors="replace") if msg.key is not None else None}
        try:
            value = registry.decode(topic.value, msg.value or b"")
            if isinstance(value, tuple):
                out["type"], value = value
            out["value"] = value
        except SerdeError as exc:
            bad += 1
            out["error"] = str(exc)
            out["raw"] = msg.value
            print(f"stream: warning: {msg.topic}[{msg.partition}]@{msg.offset}: {exc}", file=sys.stderr)
        _print_json(out)
    print(f"stream: {n} record(s) read from {topic.name}, {bad} undecodable", file=sys.stderr)
    return 0


# --- produce -----------------------------------------------------------------------------

def cmd_produce(args: argparse.Namespace, settings: Settings) -> int:
    from stream.adapters.kafka import producer
    from stream.loadgen import produce_workload
    from stream.stack import bootstrap_servers
    from stream.workload import Workload
    topic = _topology(settings).topic("clicks.v1")
    ing = settings.ingest
    span_s = args.events / args.rate  # of event time
    if span_s > 0.9 * ing.max_skew_s + ing.max_future_s / 2:  # a margin: the oldest must not age out in flight
        raise StreamError(f"{args.events:,} events at --rate {args.rate:g} span {span_s:,.0f} s of event time, "
                          f"more than ingest accepts ({ing.max_skew_s:g} s in the past, {ing.max_future_s:g} s ahead): "
                          f"raise --rate (event time) or lower --events; --target-rate limits the send rate")
    bootstrap = bootstrap_servers(settings)
    # the events end about now: older ones within max_skew_s, none beyond half of max_future_s
    start_ms = int(time.time() * 1000 - max(0.0, span_s - ing.max_future_s / 2) * 1000)
    wl = Workload(seed=args.seed, users=args.users, rate=args.rate, start_ms=start_ms)
    bar = Progress("produced events", args.events)
    stats = produce_workload(producer(bootstrap), topic, wl, events=args.events, batch_size=args.batch_size,
                             malformed_share=args.malformed, target_rate=args.target_rate,
                             progress=lambda done, total: bar(done))
    bar.done()
    print(f"produced {stats.events} events ({stats.malformed} malformed) in {stats.messages} messages "
          f"to {topic.name} in {stats.seconds:.1f}s ({stats.events / max(stats.seconds, 1e-9):,.0f} events/s)")
    return 0


def cmd_top(args: argparse.Namespace, settings: Settings) -> int:
    from stream.adapters.kafka import read
    from stream.serde import SchemaRegistry
    from stream.stack import bootstrap_servers
    from stream.top import run as top
    topics = sorted(name for name in _topology(settings).topics if name.startswith("monitor."))
    registry = SchemaRegistry(settings.paths.schemas_dir)
    bootstrap = bootstrap_servers(settings)
    since_ms = int((time.time() - args.since) * 1000)

    def records():
        # --once: what the topics hold from --since on (read in well under a second), then stop
        for msg in read(bootstrap, topics, since_ms=since_ms, idle_timeout=1.5 if args.once else None,
                        deadline=time.monotonic() + 5.0 if args.once else None, idle_yield=not args.once):
            if msg is None:  # nothing new: a chance to redraw (and to see a stopped worker go)
                yield None
                continue
            try:
                yield registry.decode("StageMetrics", msg.value or b"")
            except StreamError as exc:
                print(f"stream: warning: {msg.topic}[{msg.partition}]@{msg.offset}: {exc}", file=sys.stderr)
    if args.json and not args.once:
        raise StreamError("--json prints one snapshot: use it with --once")
    snap = top(records(), once=args.once, refresh_s=args.refresh, json_out=args.json)
    if args.once and not snap["stages"]:
        print(f"stream: error: no monitoring record in the last {args.since:g} s: is a worker running?",
              file=sys.stderr)
        return 1
    return 0


def cmd_dashboard(args: argparse.Namespace, settings: Settings) -> int:
    from stream.adapters.kafka import read
    from stream.dashboard import check_broker, serve, topics
    from stream.serde import SchemaRegistry
    from stream.stack import bootstrap_servers
    schema_of = topics(_topology(settings))
    registry = SchemaRegistry(settings.paths.schemas_dir)
    bootstrap = bootstrap_servers(settings)
    check_broker(bootstrap)
    messages = read(bootstrap, list(schema_of), since_ms=int((time.time() - args.since) * 1000), idle_yield=True)
    return serve(messages, schema_of, registry.decode, host=args.host, port=args.port, refresh_s=args.refresh)


# --- worker and profiles ----------------------------------------------------------------

def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    from stream.stack import with_endpoints
    settings = with_endpoints(settings)
    if args.web_port is not None:
        settings = settings.replace(faust={"web_port": args.web_port})
    from stream.app.worker import run  # imports Faust: only for this command
    return run(settings, args.stages, args.worker_id)


def cmd_profile(args: argparse.Namespace, settings: Settings) -> int:
    from stream.adapters.redis_store import read_profile
    from stream.serde import SchemaRegistry
    from stream.stack import redis_url as find_redis
    redis_url = find_redis(settings)
    profile = read_profile(redis_url, args.user_id, SchemaRegistry(settings.paths.schemas_dir),
                           settings.redis.key_prefix)
    if profile is None:
        print(f"stream: error: no profile for user {args.user_id!r} in Redis ({redact_url(redis_url)})",
              file=sys.stderr)
        return 1
    _print_json(profile)
    return 0


# --- demo ------------------------------------------------------------------------------

def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from stream.demo import DemoOptions, run
    return run(settings, DemoOptions(seconds=args.seconds, rate=args.rate, users=args.users,
                                     warmup_events=args.warmup_events, keep=args.keep))


# --- config ------------------------------------------------------------------------------

SECRET_FIELDS = ("pseudonymise_key", "hmac_key", "sasl_password")


def cmd_config(args: argparse.Namespace, settings: Settings) -> int:
    import dataclasses
    data = dataclasses.asdict(settings)
    for section in data.values():  # keys are shown as set or not, never in clear
        for name in SECRET_FIELDS:
            if name in section:
                value = section[name]
                section[name] = "<development default>" if value == DEV_HMAC_KEY else "<set>" if value else ""
    data["redis"]["url"] = redact_url(data["redis"]["url"])  # a password in the URL is a secret too
    _print_json(data)
    for problem in production_problems(settings):
        print(f"stream config: production mode: {problem}", file=sys.stderr)
    return 0


# --- parser ------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="stream", description=(
        "Streaming ML service for clickstream recommendations. Settings come from defaults, "
        "a YAML file (--config or STREAM_CONFIG) and STREAM_<SECTION>_<FIELD> variables."))
    p.add_argument("--config", help="YAML settings file (sections: kafka, redis, stack, ...)")
    p.add_argument("--log-level", type=log_level, default=None,
                   help="debug, info, warning, error, critical (default: faust.log_level)")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(name: str, handler: Handler, help: str, description: str | None = None) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help, description=description or help)
        sp.set_defaults(handler=handler)
        return sp

    sp = add("up", cmd_up, "start the embedded broker (Tansu) and Redis (Valkey) on loopback",
             "Start the embedded stack if it is not running (running it twice is harmless), wait until "
             "both answer, and print the endpoints. Ports default to free ones.")
    sp.add_argument("--broker-port", type=port, help="broker port (default: stack.broker_port, 0 = free port)")
    sp.add_argument("--redis-port", type=port, help="Redis port (default: stack.redis_port, 0 = free port)")
    sp = add("status", cmd_status, "show what the embedded stack runs (exit 3 if not all running)")
    sp.add_argument("--json", action="store_true", help="print JSON")
    add("down", cmd_down, "stop exactly the processes `stream up` started, by PID")

    topics = sub.add_parser("topics", help="create or list the topics declared in the topology",
                            description="Create or list the topics declared in topologies/*.yaml.")
    tsub = topics.add_subparsers(dest="topics_command", metavar="ACTION", required=True)
    sp = tsub.add_parser("create", help="create every declared topic (idempotent)",
                         description="Create every topic declared in the topology; existing ones are kept.")
    sp.set_defaults(handler=cmd_topics_create)
    sp = tsub.add_parser("list", help="list topics on the broker with partition counts",
                         description="List declared and existing topics with their partition counts.")
    sp.add_argument("--json", action="store_true", help="one JSON object per topic")
    sp.set_defaults(handler=cmd_topics_list)

    sp = add("tail", cmd_tail, "decode a declared topic with its schema, one JSON line per record")
    sp.add_argument("topic", help="a topic declared in the topology, e.g. clicks.v1")
    sp.add_argument("--from-beginning", action="store_true", help="start at the earliest offset (default: new records)")
    sp.add_argument("--max", type=count(1), default=None, help="stop after N records")
    sp.add_argument("--idle-timeout", type=number(0, low_open=True), default=None,
                    help="stop after this many seconds without a record (default: follow)")

    sp = add("top", cmd_top, "live view of the pipeline: per-stage rates, lag, latency; model, rollout, drift",
             "Read the stages' monitoring streams (monitor.<stage>.v1) and redraw a table every few seconds: "
             "workers, events in/out per second, reject share, consumer lag in events, p99 time per Kafka "
             "message, p99 event-time lag, readiness; the champion model's rolling metrics per traffic slice; the rollout "
             "state; drift alarms. Ctrl-C stops it.")
    sp.add_argument("--once", action="store_true", help="print one snapshot of the last --since seconds and exit")
    sp.add_argument("--since", type=number(1, 86_400), default=15.0,
                    help="seconds of monitoring records to start from (default 15: three monitor intervals)")
    sp.add_argument("--refresh", type=number(0.2, 60), default=2.0, help="seconds between redraws (default 2)")
    sp.add_argument("--json", action="store_true", help="with --once: the snapshot as JSON")

    sp = add("dashboard", cmd_dashboard, "live web page: stage rates and lag, CTR and loss over time, models, drift, alerts",
             "Serve a live page (plain SVG charts, no external asset) from the monitoring, alert, drift and "
             "dead-letter topics: per stage events/s and lag over time, the champion's CTR and log loss per traffic "
             "slice and its version, the rollout state, each drift statistic against its threshold, the last alerts "
             "and dead letters. /api/snapshot is the JSON it polls; /healthz. SIGINT/SIGTERM stops it.")
    sp.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    sp.add_argument("--port", type=port, default=8088, help="HTTP port (default 8088, 0 = a free port)")
    sp.add_argument("--since", type=number(1, 86_400), default=600.0,
                    help="seconds of records to start from: alerts, dead letters and drift reports of that period "
                         "(default 600); the charts start when the dashboard does")
    sp.add_argument("--refresh", type=number(0.2, 60), default=2.0,
                    help="seconds between points of the charts (default 2); they span up to 30 min (at most 1800 points)")

    sp = add("produce", cmd_produce, "produce a synthetic clickstream to clicks.v1")
    sp.add_argument("--events", type=count(1), default=10_000, help="how many events (default 10000)")
    sp.add_argument("--batch-size", type=count(0, 100_000), default=0,
                    help="events per ClickBatch message (0 = one ClickEvent per message)")
    sp.add_argument("--users", type=count(1), default=1000, help="distinct simulated users (default 1000)")
    sp.add_argument("--malformed", type=number(0, 1), default=0.0, help="share of malformed records (0..1)")
    sp.add_argument("--rate", type=number(0, low_open=True), default=1000.0,
                    help="event-time rate: events per second of event time (default 1000); "
                         "events / rate must fit the ingest window (ingest.max_skew_s + max_future_s)")
    sp.add_argument("--target-rate", type=number(0), default=0.0, help="wall-clock events/s limit (0 = as fast as possible)")
    sp.add_argument("--seed", type=count(0), default=0)

    sp = add("worker", cmd_worker, "run stages in a Faust worker until stopped (SIGTERM/SIGINT)",
             "Run the chosen stages in one Faust worker process. Several workers share the partitions "
             "through the consumer group. Prometheus metrics are served on the web port at /metrics.")
    sp.add_argument("--stages", type=cli_stages, default=DEFAULT_STAGES,
                    help="comma-separated stages (default: ingest,profile,feedback,score,learn); "
                         "`--stages learn` runs the single learner alone, in its own consumer group; "
                         "`--stages drift` runs the drift monitor (one per deployment), in its own group")
    sp.add_argument("--web-port", type=port, default=None, help="HTTP port for /metrics (default: faust.web_port)")
    sp.add_argument("--worker-id", default=None, help="name in monitoring records (default: host-pid)")

    sp = add("profile", cmd_profile, "print one user's profile from Redis as JSON")
    sp.add_argument("user_id")

    sp = add("demo", cmd_demo, "the main job: the whole pipeline on the embedded stack with simulated users",
             "Start the embedded stack (unless running), create the topics, start a worker with every stage, "
             "warm up, run the closed-loop simulator and print a summary (events, recommendations, CTR over "
             "time, model versions). Stops what it started unless --keep.")
    sp.add_argument("--seconds", type=number(0, 86_400, low_open=True), default=60.0, help="how long the simulator runs (default 60)")
    sp.add_argument("--rate", type=number(0, low_open=True), default=1000.0, help="simulated events per second (default 1000)")
    sp.add_argument("--users", type=count(1), default=500, help="simulated users (default 500)")
    sp.add_argument("--warmup-events", type=count(0), default=20_000, help="synthetic events before the simulator")
    sp.add_argument("--keep", action="store_true", help="leave the stack running afterwards")

    from stream.model_cli import add_parser as add_model_parser
    add_model_parser(sub)
    from stream.drift_cli import add_parser as add_drift_parser
    add_drift_parser(sub)
    from stream.replay.cli import add_parser as add_replay_parser
    add_replay_parser(sub)

    add("config", cmd_config, "print the effective settings as JSON")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    import signal
    from stream import log
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `stream tail ... | head` ends quietly
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = Settings.load(args.config)
        log.configure(args.log_level or settings.faust.log_level)
        if settings.kafka.bootstrap_servers:  # an external cluster (the embedded broker is PLAINTEXT)
            from stream.adapters.kafka import use_security
            use_security(settings.kafka)
        return args.handler(args, settings)
    except StreamError as exc:
        print(f"stream: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("stream: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
