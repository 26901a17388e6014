"""``stream dashboard``: a live web page of the pipeline, from the same topics ``stream top`` reads.

A reader thread folds the records of ``monitor.<stage>.v1`` (into :class:`stream.top.Board`),
the drift topics, ``alerts.v1`` and ``clicks.dlq.v1`` into a :class:`History`: a bounded ring
of snapshots taken every refresh interval (input events/s and lag in events per stage, CTR and
log loss per traffic slice, the champion's version), the latest value of each drift statistic
with its threshold, the last alerts and the last dead letters (reason and position, never the
payload). A stdlib HTTP server serves one self-contained page (``/``: inline CSS and JS drawing
plain SVG, no external asset), the JSON it polls (``/api/snapshot``) and ``/healthz``.

>>> h = History(points=2, refresh_s=1.0)
>>> h.add("StageMetrics", {"stage": "ingest", "worker": "w1", "emitted_at": 1_000, "interval_s": 1.0,
...                        "events_in": 300, "events_out": 300, "rejected": 0, "outputs": {"consumer_lag_events": 7.0}})
>>> [h.tick(t) for t in (1_500, 1_900, 2_600, 3_700)]  # the second is not due yet
[True, False, True, True]
>>> s = h.snapshot(3_700)["series"]
>>> s["t"], s["in_per_s"], s["lag_events"]  # bounded: the two newest points
([2600, 3700], {'ingest': [300.0, 300.0]}, {'ingest': [7, 7]})
"""

from __future__ import annotations

import json
import logging
import math
import signal
import sys
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Iterable, Iterator, TextIO
from urllib.parse import urlsplit

from stream.core.drift_monitor import LOWER_IS_WORSE
from stream.dashboard_page import PAGE
from stream.errors import BrokerError, StreamError
from stream.log import event
from stream.stack import port_open
from stream.top import Board, stage_key
from stream.topology import Topology

log = logging.getLogger("stream.dashboard")

WINDOW_S = 1800.0  # the series cover the last 30 minutes
MAX_POINTS = 1800
RECENT = 20  # alerts and dead letters kept
MAX_DRIFT_KEYS = 500  # (stage, quantity, statistic) rows; the topology declares far fewer
SCHEMAS = ("StageMetrics", "Alert", "DriftReport", "DeadLetter")
SECURITY_HEADERS = {  # the page may load nothing from anywhere: inline script and style, fetches to itself
    "Content-Security-Policy": "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
                               "connect-src 'self'; img-src 'self' data:",
    "X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"}


def drift_level(statistic: str, value: float, threshold: float) -> float | None:
    """How far a statistic is toward its threshold: 1.0 at the threshold, above 1 beyond it.

    >>> drift_level("psi", 0.1, 0.2), drift_level("chi2", 1e-8, 1e-6), drift_level("ks", 0.1, 0.0)
    (0.5, 100.0, None)
    """
    if statistic in LOWER_IS_WORSE:  # a p-value: smaller is worse
        return round(threshold / value, 4) if value > 0 else None
    return round(value / threshold, 4) if threshold > 0 else None


class History:
    """What the page draws: a ring of ``points`` snapshots one ``refresh_s`` apart, the latest drift
    statistics, the last ``recent`` alerts and dead letters. Thread-safe: the reader adds and ticks,
    the web server reads."""

    def __init__(self, points: int = 900, refresh_s: float = 2.0, recent: int = RECENT) -> None:
        self.board = Board()
        self.refresh_ms = refresh_s * 1000
        self.points: deque[dict] = deque(maxlen=points)
        self.drift: dict[tuple[str, str, str], dict] = {}
        self.alerts: deque[dict] = deque(maxlen=recent)
        self.dead_letters: deque[dict] = deque(maxlen=recent)
        self.records = 0
        self.lock = threading.Lock()

    def add(self, schema: str, r: dict) -> None:
        """Fold one decoded record of one of :data:`SCHEMAS`."""
        with self.lock:
            self.records += 1
            if schema == "StageMetrics":
                self.board.add(r)
            elif schema == "DriftReport":
                key = (r["stage"], r["quantity"], r["statistic"])
                old = self.drift.get(key)
                if old is None and len(self.drift) >= MAX_DRIFT_KEYS or old and old["window_end"] > r["window_end"]:
                    return
                self.drift[key] = {
                    "stage": r["stage"], "quantity": r["quantity"], "statistic": r["statistic"],
                    "value": r["value"], "threshold": r["threshold"], "alarm": r["alarm"],
                    "level": drift_level(r["statistic"], r["value"], r["threshold"]),
                    "calibrated": r.get("calibrated", True), "window_end": r["window_end"],
                    "sample_size": r["sample_size"]}
            elif schema == "Alert":
                self.alerts.append({k: r.get(k) for k in ("name", "severity", "stage", "message", "created",
                                                          "model_name")})
            elif schema == "DeadLetter":  # where it was and why: the payload and the key stay on the topic
                self.dead_letters.append({
                    "stage": r["stage"], "reason": r["reason"], "error_class": r["error_class"],
                    "topic": r["source_topic"], "partition": r["source_partition"], "offset": r["source_offset"],
                    "batch_index": r.get("batch_index"), "failed_at": r["failed_at"]})

    def tick(self, now_ms: int) -> bool:
        """Take a point if one refresh interval has passed since the last; True if taken."""
        with self.lock:
            if self.points and now_ms - self.points[-1]["t"] < self.refresh_ms:
                return False
            snap = self.board.snapshot(now_ms)
            self.points.append({
                "t": now_ms, "model_version": snap["model_version"],
                "in_per_s": {r["stage"]: r["in_per_s"] for r in snap["stages"]},
                "lag_events": {r["stage"]: r["lag_events"] for r in snap["stages"]},
                "ctr": {k: m["ctr"] for k, m in snap["model"].items() if "ctr" in m},
                "log_loss": {k: m["log_loss"] for k, m in snap["model"].items() if "log_loss" in m}})
            return True

    def _series(self) -> dict[str, Any]:
        """The points as columns (one list per stage or slice, None where it had no value)."""
        pts = list(self.points)
        out: dict[str, Any] = {"t": [p["t"] for p in pts], "model_version": [p["model_version"] for p in pts]}
        for field in ("in_per_s", "lag_events", "ctr", "log_loss"):
            names = sorted({n for p in pts for n in p[field]}, key=stage_key)
            out[field] = {n: [p[field].get(n) for p in pts] for n in names}
        return out

    def snapshot(self, now_ms: int) -> dict[str, Any]:
        """``stream top``'s snapshot plus the series, drift statistics, alerts and dead letters (newest first)."""
        with self.lock:
            drift = sorted(self.drift.values(), key=lambda d: (not d["alarm"], -(d["level"] or 0.0)))
            return {**self.board.snapshot(now_ms), "refresh_s": self.refresh_ms / 1000, "records": self.records,
                    "series": self._series(), "drift_stats": drift,
                    "alerts": sorted(self.alerts, key=lambda a: a["created"] or 0, reverse=True),
                    "dead_letters": sorted(self.dead_letters, key=lambda d: d["failed_at"], reverse=True)}


def finite(obj: Any) -> Any:
    """The snapshot with NaN and infinities as None (JSON has no such numbers; the page's parser refuses them).

    >>> finite({"a": [1.0, float("nan")], "b": float("inf"), "c": "x"})
    {'a': [1.0, None], 'b': None, 'c': 'x'}
    """
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    return obj


class Reader:
    """Folds decoded records into a History from a thread, and ticks it. The first poll happens in
    :meth:`start`, in the caller's thread: a broker that does not answer fails the command there."""

    def __init__(self, history: History, messages: Iterator, schema_of: dict[str, str],
                 decode: Callable[[str, bytes], dict], clock: Callable[[], float] = time.time) -> None:
        self.history, self.messages, self.schema_of, self.decode, self.clock = history, messages, schema_of, decode, clock
        self.stopping = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="dashboard-reader", daemon=True)
        self._first = None

    def start(self) -> None:
        self._first = next(self.messages)
        self.thread.start()

    def alive(self) -> bool:
        return self.thread.is_alive()

    def stop(self, timeout: float = 5.0) -> None:
        self.stopping.set()
        if self.thread.is_alive():
            self.thread.join(timeout)

    def _fold(self, msg: Any) -> None:
        schema = self.schema_of[msg.topic]
        try:
            record = self.decode(schema, msg.value or b"")
        except StreamError as exc:
            event(log, "record_undecodable", logging.WARNING, topic=msg.topic, partition=msg.partition,
                  offset=msg.offset, error=str(exc))
            return
        self.history.add(schema, record)

    def _run(self) -> None:
        try:
            msg = self._first
            while not self.stopping.is_set():
                if msg is not None:
                    self._fold(msg)
                self.history.tick(int(self.clock() * 1000))
                msg = next(self.messages)
        except StopIteration:
            pass
        except Exception as exc:  # the main thread sees the reader gone and exits with the reason
            self.error = exc
            event(log, "dashboard_reader_failed", logging.ERROR, error=str(exc))
        finally:
            close = getattr(self.messages, "close", None)
            if close is not None:
                close()


class DashboardServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], history: History, healthy: Callable[[], bool] = lambda: True,
                 clock: Callable[[], float] = time.time) -> None:
        self.history, self.healthy, self.clock = history, healthy, clock
        super().__init__(address, Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/"


class Handler(BaseHTTPRequestHandler):
    server: DashboardServer
    server_version = "stream-dashboard"

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        path = urlsplit(self.path).path
        if path == "/":
            self._send(200, PAGE.encode(), "text/html; charset=utf-8")
        elif path == "/api/snapshot":
            snap = self.server.history.snapshot(int(self.server.clock() * 1000))
            body = json.dumps(finite(snap), separators=(",", ":"), allow_nan=False).encode()
            self._send(200, body, "application/json")
        elif path == "/healthz":
            ok = self.server.healthy()
            body = {"status": "ok" if ok else "reader stopped", "records": self.server.history.records}
            self._send(200 if ok else 503, json.dumps(body).encode(), "application/json")
        else:
            self._send(404, b'{"error":"not found"}', "application/json")

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in SECURITY_HEADERS.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (http.server's signature)
        event(log, "http_request", logging.DEBUG, client=self.client_address[0], request=format % args)


def topics(topology: Topology) -> dict[str, str]:
    """Topic -> value schema of every topic the page reads: monitoring, alerts, drift, dead letters."""
    chosen = [(SCHEMAS.index(t.value), name, t.value) for name, t in topology.topics.items() if t.value in SCHEMAS]
    return {name: schema for _, name, schema in sorted(chosen)}


def describe(names: Iterable[str]) -> str:
    """Topic names, a family of monitoring or drift topics as one pattern.

    >>> describe(["monitor.ingest.v1", "monitor.learn.v1", "alerts.v1", "drift.input.v1", "clicks.dlq.v1"])
    'monitor.*.v1, alerts.v1, drift.*.v1, clicks.dlq.v1'
    """
    groups: list[str] = []
    for name in names:
        parts = name.split(".")
        group = f"{parts[0]}.*.{parts[-1]}" if parts[0] in ("monitor", "drift") and len(parts) > 2 else name
        if group not in groups:
            groups.append(group)
    return ", ".join(groups)


def check_broker(bootstrap: str, timeout: float = 2.0) -> None:
    """BrokerError at once when no bootstrap server takes a connection (librdkafka would retry for
    ten seconds first, one stderr line per attempt)."""
    for server in bootstrap.split(","):
        host, _, port = server.strip().rpartition(":")
        if port.isdigit() and port_open(host.strip("[]") or "127.0.0.1", int(port), timeout):
            return
    raise BrokerError(f"no Kafka broker answers at {bootstrap}: is it running? (`stream status`, `stream up`)")


def bind(host: str, port: int, history: History, healthy: Callable[[], bool] = lambda: True) -> DashboardServer:
    """The server bound (not yet serving); a taken port or bad host is one StreamError."""
    try:
        return DashboardServer((host, port), history, healthy)
    except OSError as exc:
        raise StreamError(f"cannot serve on {host}:{port}: {exc.strerror or exc}") from None


def serve(messages: Iterator, schema_of: dict[str, str], decode: Callable[[str, bytes], dict], *, host: str,
          port: int, refresh_s: float, out: TextIO = sys.stdout) -> int:
    """Bind, start the reader (its first poll checks the broker), serve until SIGINT/SIGTERM."""
    history = History(points=min(MAX_POINTS, max(2, int(WINDOW_S / refresh_s))), refresh_s=refresh_s)
    reader = Reader(history, messages, schema_of, decode)
    server = bind(host, port, history, reader.alive)
    stop, got = threading.Event(), []
    web = threading.Thread(target=server.serve_forever, args=(0.25,), name="dashboard-web", daemon=True)
    previous = {}

    def on_signal(signum: int, frame: object) -> None:
        got.append(signum)
        stop.set()
    try:
        reader.start()
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, on_signal)
        web.start()
        print(f"stream dashboard: serving {server.url} (from {describe(schema_of)})", file=out, flush=True)
        event(log, "dashboard_serving", url=server.url, topics=len(schema_of), refresh_s=refresh_s)
        while not stop.wait(0.5) and reader.alive():
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if web.is_alive():
            server.shutdown()
        server.server_close()
        reader.stop()
    event(log, "dashboard_stopped", records=history.records,
          reason=signal.Signals(got[0]).name if got else "reader stopped")
    if reader.error is not None:
        raise StreamError(f"reading the monitoring topics: {reader.error}")
    return 0
