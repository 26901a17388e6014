"""Baselines of the ingest+profile benchmark: the same work, written without our design.

Each baseline consumes ``N`` already-produced events from a ``ClickMessage`` topic
(single events or ``ClickBatch`` envelopes) and does the same per-event work as the
service: :func:`stream.core.ingest.validate`, then :func:`stream.core.profile.fold`
into a per-user profile dict, then outputs the profile.

``tutorial_faust``
    Faust as its tutorials write it: an agent on the raw topic, a ``group_by(user_id)``
    repartition (batch envelopes: the agent sends each event to the repartition topic),
    an ``app.Table`` of profile dicts (JSON) and ``await topic.send(...)`` per event.
``raw_loop``
    A plain confluent-kafka Consumer (``assign()`` of every partition, from the
    beginning), fastavro decode, fold, and per event one ``Producer.produce`` of the
    Avro UserProfile to an output topic plus one to a changelog-style topic (linger 5 ms).
``faust_passthrough``
    A bare Faust agent that only counts Kafka messages: the ceiling of Faust's
    per-message cost (it decodes nothing, so it is not an ingest+profile pipeline).

The clock runs from the first consumed message to the last expected event, outputs
flushed. Every baseline runs in its own process (``python -m load.baselines NAME ...``
prints one ``RESULT {json}`` line on stdout); the ``run_<name>`` functions start that
process, bound every wait, and always stop it. Progress goes to stderr as logfmt lines.

The topic must hold exactly ``expected_events`` events: the Faust baselines learn the
topic's shape (single events or envelopes, message count) from an untimed scan first,
because Tansu reports log-end offsets low for multi-record batches (so watermarks
cannot tell when a run is done; every baseline counts records instead).

CLI (from the project root)::

    python -m load.baselines produce --bootstrap B --topic T --events N --partitions 4 [--batch-size 100]
    python -m load.baselines all --bootstrap B --topic T --events N --partitions 4 [--repeat 3] [--timeout 300]
    python -m load.baselines raw_loop --bootstrap B --topic T --events N --partitions 4   # one, in-process
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import logging
import os
import queue
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import faust
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from faust.serializers.codecs import Codec

from stream.adapters import kafka
from stream.core.ingest import IngestConfig, validate
from stream.core.profile import Position, ProfileConfig, fold
from stream.errors import StreamError, ValidationError
from stream.log import LogfmtFormatter, event
from stream.serde import CLICK_BATCH, CLICK_EVENT, CLICK_MESSAGE, SchemaRegistry
from stream.topology import Topic

PROJECT_ROOT = Path(__file__).resolve().parent.parent
BASELINES = ("tutorial_faust", "raw_loop", "faust_passthrough")
RESULT_PREFIX = "RESULT "
#: on top of timeout_s: child start-up (imports, Faust's group join) and its shutdown
START_GRACE_S = 30.0
EXIT_GRACE_S = 15.0

log = logging.getLogger("load.baselines")


class BaselineError(StreamError):
    """A baseline did not finish: timeout, crash, or a topic that does not hold N events."""


def setup_logging() -> None:
    """logfmt progress lines on stderr (own handler: Faust reconfigures the root logger)."""
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(LogfmtFormatter())
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False
    logging.getLogger("aiokafka").setLevel(logging.WARNING)


# --- what every baseline shares -------------------------------------------------------------

@dataclass(frozen=True)
class RunSpec:
    """What one baseline run consumes."""

    bootstrap: str
    topic: str
    events: int
    partitions: int
    timeout_s: float

    def argv(self) -> list[str]:
        return ["--bootstrap", self.bootstrap, "--topic", self.topic, "--events", str(self.events),
                "--partitions", str(self.partitions), "--timeout", str(self.timeout_s)]


def run_id(name: str) -> str:
    """A unique id per run (Faust app id, consumer group, topic prefix)."""
    return f"bench-{name.replace('_', '-')}-{uuid.uuid4().hex[:8]}"


def now_ms() -> int:
    return int(time.time() * 1000)


def events_of(kind: str, record: dict) -> list[dict]:
    """The events of a decoded ClickMessage: the batch's events, or the one event."""
    return record["events"] if kind == CLICK_BATCH else [record]


class Work:
    """The per-event work of every profiling baseline: validate, then fold."""

    def __init__(self) -> None:
        self.ingest = IngestConfig()
        self.profile = ProfileConfig()
        self.rejected = 0

    def apply(self, profile: dict | None, ev: dict, pos: Position, now: int) -> dict | None:
        """The folded profile, or None when validation rejects ``ev``."""
        try:
            validate(ev, now, self.ingest)
        except ValidationError:
            self.rejected += 1
            return None
        return fold(profile, ev, pos, self.profile)


class Meter:
    """Counts from the first consumed message to the expected last one; logs progress.

    Besides wall time it takes this process's CPU time over the same span (all threads,
    librdkafka's included): on a shared 2-core machine it moves less with other load.
    """

    def __init__(self, name: str, expected: int, report_every_s: float = 1.0) -> None:
        self.name = name
        self.expected = expected
        self.report_every_s = report_every_s
        self.count = 0
        self.t0: float | None = None
        self.t1: float | None = None
        self.cpu0 = self.cpu1 = 0.0
        self._reported = 0.0

    def start(self) -> None:
        """Mark the first consumed message (later calls do nothing)."""
        if self.t0 is None:
            self.t0, self.cpu0 = time.monotonic(), time.process_time()
            event(log, "first_message", baseline=self.name)

    def add(self, n: int = 1) -> bool:
        """Count ``n``; True exactly once: when the count reaches the expected total."""
        before = self.count
        self.count += n
        return before < self.expected <= self.count

    @property
    def done(self) -> bool:
        return self.count >= self.expected

    def stop(self) -> None:
        self.t1, self.cpu1 = time.monotonic(), time.process_time()

    @property
    def seconds(self) -> float:
        if self.t0 is None:
            return 0.0
        return (self.t1 if self.t1 is not None else time.monotonic()) - self.t0

    def report(self, force: bool = False) -> None:
        """A progress line, at most every ``report_every_s`` unless forced."""
        now = time.monotonic()
        if self.t0 is None or (not force and now - self._reported < self.report_every_s):
            return
        self._reported = now
        secs = self.seconds
        event(log, "progress", baseline=self.name, count=self.count, expected=self.expected,
              seconds=round(secs, 2), per_s=round(self.count / secs) if secs > 0 else 0)

    def result(self, events: int | None = None, **extra: Any) -> dict:
        """``dict(events, seconds, events_per_s, ...)``; ``events`` defaults to the count."""
        n = self.count if events is None else events
        secs = self.seconds
        cpu_end = self.cpu1 if self.t1 is not None else time.process_time()
        cpu = cpu_end - self.cpu0 if self.t0 is not None else 0.0
        return {"baseline": self.name, "events": n, "seconds": round(secs, 3),
                "events_per_s": round(n / secs, 1) if secs > 0 else 0.0, "cpu_seconds": round(cpu, 3),
                "events_per_cpu_s": round(n / cpu, 1) if cpu > 0 else 0.0, **extra}


def emit_result(result: dict) -> None:
    """The one line the parent reads (on the real stdout: Faust may redirect sys.stdout)."""
    out = sys.__stdout__
    out.write(RESULT_PREFIX + json.dumps(result) + "\n")
    out.flush()


# --- the topic's shape (an untimed scan) ---------------------------------------------------

@dataclass(frozen=True)
class TopicShape:
    messages: int  #: Kafka messages holding the events
    events: int
    batches: int  #: how many of the messages are ClickBatch envelopes

    @property
    def kind(self) -> str:
        return "single" if self.batches == 0 else "batch"


@functools.lru_cache(maxsize=32)
def scan_topic(spec: RunSpec) -> TopicShape:
    """Read the topic once (not timed): messages and envelopes holding ``spec.events`` events."""
    reg = SchemaRegistry.default()
    messages = events = batches = 0
    deadline = time.monotonic() + spec.timeout_s
    for msg in kafka.read(spec.bootstrap, spec.topic, partitions=spec.partitions, idle_timeout=10.0,
                          deadline=deadline):
        kind, record = reg.decode_clicks(msg.value)
        messages += 1
        batches += kind == CLICK_BATCH
        events += len(events_of(kind, record))
        if events >= spec.events:
            shape = TopicShape(messages, events, batches)
            event(log, "topic_scanned", topic=spec.topic, messages=messages, events=events, kind=shape.kind)
            return shape
    raise BaselineError(f"{spec.topic} holds only {events} events in {messages} messages "
                        f"(expected {spec.events})")


# --- raw_loop: confluent-kafka + fastavro, no framework ---------------------------------------

def _produce(producer: Producer, topic: str, key: str, value: bytes) -> None:
    while True:
        try:
            producer.produce(topic, value=value, key=key)
            return
        except BufferError:  # local queue full: serve delivery reports, retry
            producer.poll(0.05)


def _raw_consumer(spec: RunSpec, group: str) -> Consumer:
    consumer = Consumer({"bootstrap.servers": spec.bootstrap, "group.id": group, "enable.auto.commit": False,
                         "auto.offset.reset": "earliest", "enable.partition.eof": False})
    # assign(), not subscribe(): Tansu holds every group join for half the session timeout
    consumer.assign([TopicPartition(spec.topic, p, OFFSET_BEGINNING) for p in range(spec.partitions)])
    return consumer


def raw_loop(spec: RunSpec) -> dict:
    """Run the raw_loop baseline in this process; its result dict."""
    rid = run_id("raw_loop")
    out, changelog = f"{rid}-profiles", f"{rid}-changelog"
    kafka.create_topics(spec.bootstrap, [Topic(out, "user_id", "UserProfile", spec.partitions, "compact"),
                                         Topic(changelog, "user_id", "UserProfile", spec.partitions, "compact")])
    reg, work, state = SchemaRegistry.default(), Work(), {}
    meter = Meter("raw_loop", spec.events)
    producer = kafka.producer(spec.bootstrap)  # linger.ms=5
    consumer = _raw_consumer(spec, rid)
    deadline = time.monotonic() + spec.timeout_s
    try:
        while not meter.done:
            if time.monotonic() >= deadline:
                return meter.result(error="timeout")
            # one message until the clock runs, so no wait for a full batch hides before t0
            msgs = consumer.consume(500 if meter.t0 is not None else 1, 0.2)
            if msgs:
                meter.start()
            now = now_ms()
            for msg in msgs:
                if msg.error():
                    raise BaselineError(f"reading {spec.topic}: {msg.error()}")
                kind, record = reg.decode_clicks(msg.value())
                for i, ev in enumerate(events_of(kind, record)):
                    uid = ev["user_id"]
                    p = work.apply(state.get(uid), ev, Position(msg.partition(), msg.offset(), i), now)
                    if p is not None:
                        state[uid] = p
                        value = reg.encode("UserProfile", p)
                        _produce(producer, out, uid, value)
                        _produce(producer, changelog, uid, value)
                    meter.add()
            producer.poll(0)
            meter.report()
        kafka.flush(producer, timeout=max(1.0, deadline - time.monotonic()))
        meter.stop()
        return meter.result(rejected=work.rejected, users=len(state))
    finally:
        consumer.close()


# --- Faust baselines ------------------------------------------------------------------------

class ClickMessageCodec(Codec):
    """Faust codec for clicks.v1 values: ``("ClickEvent", event)`` or ``("ClickBatch", batch)``."""

    def _loads(self, s: bytes) -> Any:
        return SchemaRegistry.default().decode_clicks(s)

    def _dumps(self, s: Any) -> bytes:
        return SchemaRegistry.default().encode(CLICK_MESSAGE, tuple(s))


def faust_app(name: str, spec: RunSpec, datadir: str) -> faust.App:
    """A Faust app with the benchmark's settings and a unique id."""
    return faust.App(run_id(name), broker=f"kafka://{spec.bootstrap}", store="memory://", datadir=datadir,
                     web_enabled=False, processing_guarantee="at_least_once", broker_session_timeout=6,
                     broker_heartbeat_interval=1, topic_partitions=spec.partitions, topic_replication_factor=1,
                     consumer_auto_offset_reset="earliest", autodiscover=False)


class FaustRun:
    """One Faust baseline process: progress timer, watchdog, and the end of the run."""

    def __init__(self, app: faust.App, meter: Meter, timeout_s: float,
                 extra: Callable[[], dict] = dict) -> None:
        self.app, self.meter, self.timeout_s, self.extra = app, meter, timeout_s, extra
        self.result: dict | None = None
        app.timer(1.0)(self._progress)
        app.task(self._watchdog)

    async def _progress(self) -> None:
        self.meter.report(force=True)

    async def _watchdog(self) -> None:
        setup_logging()  # the worker has configured logging by now
        await asyncio.sleep(self.timeout_s)
        if self.result is None:
            self._end(self.meter.result(error="timeout", **self.extra()))

    async def finish(self) -> None:
        """The last expected event is done: flush outputs, stop the clock, report, stop."""
        if self.result is not None:
            return
        await self.app.producer.flush()
        self.meter.stop()
        self._end(self.meter.result(**self.extra()))

    def _end(self, result: dict) -> None:
        """Report at once (the parent reads it before the shutdown), then stop the worker."""
        self.result = result
        emit_result(result)
        os.kill(os.getpid(), signal.SIGTERM)  # the worker's graceful shutdown

    def run(self) -> dict:
        """Run the worker until :meth:`finish` or the watchdog stops it; the result it reported."""
        worker = faust.Worker(self.app, loglevel="WARNING", quiet=True, redirect_stdouts=False)
        # At WARNING the worker drives a terminal spinner from a DEBUG handler on the root
        # logger (root left at DEBUG: every aiokafka/faust debug record gets built). No spinner.
        worker.spinner = None
        try:
            worker.execute_from_commandline()
        except SystemExit:  # the worker always ends with one, also after a crash
            pass
        if self.result is None:
            self.result = self.meter.result(error="the worker stopped before the last event", **self.extra())
            emit_result(self.result)
        return self.result


def tutorial_faust_app(spec: RunSpec, datadir: str, shape: str) -> FaustRun:
    """The tutorial-style app: group_by(user_id) -> Table of JSON profiles -> send per event."""
    app = faust_app("tutorial_faust", spec, datadir)
    codec = ClickMessageCodec()
    clicks = app.topic(spec.topic, value_serializer=codec)
    by_user = app.topic(f"{app.conf.id}-by-user", key_type=str, value_serializer=codec,
                        partitions=spec.partitions, internal=True)
    out = app.topic(f"{app.conf.id}-profiles", key_type=str, value_serializer="json",
                    partitions=spec.partitions, internal=True)
    # values go through app.conf.value_serializer: "json", as in the tutorials
    profiles = app.Table("profiles", partitions=spec.partitions, key_type=str)
    work, meter = Work(), Meter("tutorial_faust", spec.events)
    run = FaustRun(app, meter, spec.timeout_s,
                   lambda: {"rejected": work.rejected, "users": len(profiles), "shape": shape})

    async def absorb(stream: faust.StreamT, value: tuple[str, dict]) -> None:
        """One event off the repartition topic: validate, fold into the table, send the profile."""
        ev, msg = value[1], stream.current_event.message
        uid = ev["user_id"]
        p = work.apply(profiles.get(uid), ev, Position(msg.partition, msg.offset, 0), now_ms())
        if p is not None:
            profiles[uid] = p
            await out.send(key=uid, value=p)
        if meter.add():
            await run.finish()

    def first(value: Any) -> Any:
        meter.start()
        return value

    if shape == "single":
        @app.agent(clicks)
        async def profile(stream: faust.StreamT) -> None:
            stream.add_processor(first)
            grouped = stream.group_by(lambda v: v[1]["user_id"], name="by-user", topic=by_user)
            async for value in grouped:
                await absorb(grouped, value)
    else:  # envelopes hold many users: re-send each event under its user's key
        @app.agent(clicks)
        async def split(stream: faust.StreamT) -> None:
            async for kind, record in stream:
                meter.start()
                for ev in events_of(kind, record):
                    await by_user.send(key=ev["user_id"], value=(CLICK_EVENT, ev))

        @app.agent(by_user)
        async def profile(stream: faust.StreamT) -> None:
            async for value in stream:
                await absorb(stream, value)
    return run


def passthrough_app(spec: RunSpec, datadir: str, messages: int) -> FaustRun:
    """A bare agent counting raw Kafka messages; reports ``spec.events`` over the same time."""
    app = faust_app("faust_passthrough", spec, datadir)
    clicks = app.topic(spec.topic, value_serializer="raw")
    meter = Meter("faust_passthrough", messages)

    def extra() -> dict:
        secs = meter.seconds
        return {"events": spec.events if meter.done else 0, "messages": meter.count,
                "messages_per_s": round(meter.count / secs, 1) if secs > 0 else 0.0}

    run = FaustRun(app, meter, spec.timeout_s, extra)

    @app.agent(clicks)
    async def count(stream: faust.StreamT) -> None:
        async for _ in stream:
            meter.start()
            if meter.add():
                await run.finish()
    return run


# --- the parent side: one child process per run --------------------------------------------

def _stdout_lines(proc: subprocess.Popen, lines: "queue.Queue[str | None]") -> None:
    for line in proc.stdout:
        lines.put(line)
    lines.put(None)


def _read_result(name: str, proc: subprocess.Popen, timeout_s: float) -> dict | None:
    """The child's RESULT line, or None if it exits or ``timeout_s`` passes first."""
    lines: queue.Queue[str | None] = queue.Queue()
    threading.Thread(target=_stdout_lines, args=(proc, lines), daemon=True).start()
    deadline = time.monotonic() + timeout_s
    while (left := deadline - time.monotonic()) > 0:
        try:
            line = lines.get(timeout=left)
        except queue.Empty:
            break
        if line is None:
            return None
        at = line.find(RESULT_PREFIX)  # Faust's worker may leave terminal escapes before it
        if at >= 0:
            return json.loads(line[at + len(RESULT_PREFIX):])
        sys.stderr.write(f"[{name} stdout] {line}")
    event(log, "child_timeout", logging.WARNING, baseline=name, pid=proc.pid, timeout_s=round(timeout_s, 1))
    return None


def _stop(proc: subprocess.Popen, timeout_s: float) -> None:
    """Wait for the child to exit, then SIGTERM, then SIGKILL its process group (its own)."""
    for sig in (None, signal.SIGTERM, signal.SIGKILL):
        if sig is not None and proc.poll() is None:
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                pass
        try:
            proc.wait(timeout_s if sig is None else 5.0)
            return
        except subprocess.TimeoutExpired:
            continue


def _run_child(name: str, spec: RunSpec, extra_argv: tuple[str, ...] = ()) -> dict:
    """Run ``python -m load.baselines NAME ...`` and return its result; always stop it."""
    datadir = tempfile.mkdtemp(prefix=f"{name}-")
    argv = [sys.executable, "-m", "load.baselines", name, *spec.argv(), "--datadir", datadir, *extra_argv]
    proc = subprocess.Popen(argv, cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL,
                            text=True, start_new_session=True)
    event(log, "child_started", baseline=name, pid=proc.pid, topic=spec.topic, events=spec.events)
    try:
        result = _read_result(name, proc, spec.timeout_s + START_GRACE_S)
    finally:
        _stop(proc, EXIT_GRACE_S)
        shutil.rmtree(datadir, ignore_errors=True)
    event(log, "child_stopped", baseline=name, pid=proc.pid, exit_code=proc.returncode)
    if result is None:
        raise BaselineError(f"{name}: no result (exit code {proc.returncode})")
    if "error" in result:
        raise BaselineError(f"{name}: {result['error']} (counted {result.get('events')} of {spec.events})")
    return result


def run_tutorial_faust(bootstrap: str, topic: str, expected_events: int, partitions: int,
                       timeout_s: float) -> dict:
    """The tutorial-style Faust app on ``topic``: dict(events, seconds, events_per_s, ...)."""
    spec = RunSpec(bootstrap, topic, expected_events, partitions, timeout_s)
    return _run_child("tutorial_faust", spec, ("--shape", scan_topic(spec).kind))


def run_raw_loop(bootstrap: str, topic: str, expected_events: int, partitions: int, timeout_s: float) -> dict:
    """The confluent-kafka loop on ``topic``: dict(events, seconds, events_per_s, ...)."""
    return _run_child("raw_loop", RunSpec(bootstrap, topic, expected_events, partitions, timeout_s))


def run_faust_passthrough(bootstrap: str, topic: str, expected_events: int, partitions: int,
                          timeout_s: float) -> dict:
    """The counting-only Faust agent on ``topic``: dict(events, seconds, events_per_s, messages, ...)."""
    spec = RunSpec(bootstrap, topic, expected_events, partitions, timeout_s)
    return _run_child("faust_passthrough", spec, ("--messages", str(scan_topic(spec).messages)))


RUNNERS: dict[str, Callable[..., dict]] = {
    "tutorial_faust": run_tutorial_faust,
    "raw_loop": run_raw_loop,
    "faust_passthrough": run_faust_passthrough,
}


# --- CLI ------------------------------------------------------------------------------------

def produce(bootstrap: str, topic: str, events: int, partitions: int, batch_size: int, seed: int,
            rate: float) -> dict:
    """Create ``topic`` and fill it with ``events`` valid workload events (no malformed ones)."""
    from stream.loadgen import produce_workload
    from stream.workload import Workload
    t = Topic(topic, "user_id", CLICK_MESSAGE, partitions, "delete", 604_800_000)
    kafka.create_topics(bootstrap, [t])
    stats = produce_workload(kafka.producer(bootstrap), t, Workload(seed=seed, rate=rate), events=events,
                             batch_size=batch_size)
    return {"topic": topic, "partitions": partitions, "events": stats.events, "messages": stats.messages,
            "seconds": round(stats.seconds, 2)}


def run_all(spec: RunSpec, names: list[str], repeat: int = 1) -> list[dict]:
    """Run the named baselines on the same topic, ``repeat`` rounds (interleaved, so drift is shared)."""
    results = []
    for round_no in range(1, repeat + 1):
        for name in names:
            result = RUNNERS[name](spec.bootstrap, spec.topic, spec.events, spec.partitions, spec.timeout_s)
            result["round"] = round_no
            event(log, "baseline_done", **result)
            results.append(result)
    return results


def summarize(results: list[dict]) -> list[dict]:
    """Per baseline: runs, the median / min / max of events_per_s, the median of events_per_cpu_s."""
    by_name: dict[str, list[dict]] = {}
    for r in results:
        by_name.setdefault(r["baseline"], []).append(r)
    summary = []
    for name, runs in by_name.items():
        rates = [r["events_per_s"] for r in runs]
        summary.append({"baseline": name, "runs": len(runs),
                        "events_per_s_median": round(statistics.median(rates), 1),
                        "events_per_s_min": min(rates), "events_per_s_max": max(rates),
                        "events_per_cpu_s_median": round(statistics.median(r["events_per_cpu_s"] for r in runs), 1)})
    return summary


def run_here(name: str, spec: RunSpec, args: argparse.Namespace) -> dict:
    """Run one baseline in this process (the child side); its RESULT line is printed on the way."""
    if name == "raw_loop":
        result = raw_loop(spec)
        emit_result(result)
        return result
    if name == "tutorial_faust":
        return tutorial_faust_app(spec, args.datadir, args.shape or scan_topic(spec).kind).run()
    return passthrough_app(spec, args.datadir, args.messages or scan_topic(spec).messages).run()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m load.baselines", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--bootstrap", required=True)
        p.add_argument("--topic", required=True)
        p.add_argument("--events", type=int, required=True)
        p.add_argument("--partitions", type=int, default=4)
        return p

    prod = common(sub.add_parser("produce", help="create a topic and produce a workload to it"))
    prod.add_argument("--batch-size", type=int, default=0, help="0/1: single events; B: envelopes of B")
    prod.add_argument("--seed", type=int, default=0)
    prod.add_argument("--rate", type=float, default=10_000.0,
                      help="event-time rate (events/s): keeps timestamps inside ingest's future bound")
    every = common(sub.add_parser("all", help="run baselines one after another, print their results"))
    every.add_argument("--timeout", type=float, default=300.0)
    every.add_argument("--only", nargs="+", choices=BASELINES, default=list(BASELINES))
    every.add_argument("--repeat", type=int, default=1, help="rounds of every baseline (interleaved)")
    for name in BASELINES:
        one = common(sub.add_parser(name, help=f"run {name} in this process; prints a RESULT line"))
        one.add_argument("--timeout", type=float, default=300.0)
        one.add_argument("--datadir", default=None, help="Faust datadir (a temporary dir by default)")
        one.add_argument("--shape", choices=("single", "batch"), help="tutorial_faust: skip the scan")
        one.add_argument("--messages", type=int, help="faust_passthrough: skip the scan")
    return parser


def main(argv: list[str] | None = None) -> int:
    setup_logging()
    args = _parser().parse_args(argv)
    if args.command == "produce":
        print(json.dumps(produce(args.bootstrap, args.topic, args.events, args.partitions, args.batch_size,
                                 args.seed, args.rate)))
        return 0
    spec = RunSpec(args.bootstrap, args.topic, args.events, args.partitions, args.timeout)
    if args.command == "all":
        results = run_all(spec, args.only, args.repeat)
        for line in results + summarize(results):
            print(json.dumps(line), flush=True)
        return 0
    own_datadir = args.datadir is None
    args.datadir = args.datadir or tempfile.mkdtemp(prefix=f"{args.command}-")
    try:
        result = run_here(args.command, spec, args)
    except Exception as exc:  # report it on the RESULT line, so the parent fails with the reason
        result = {"baseline": args.command, "events": 0, "error": f"{type(exc).__name__}: {exc}"}
        emit_result(result)
    finally:
        if own_datadir:
            shutil.rmtree(args.datadir, ignore_errors=True)
    return 1 if "error" in result else 0


if __name__ == "__main__":
    sys.exit(main())
