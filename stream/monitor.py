"""Per-stage monitoring: one set of figures feeds both ``monitor.<stage>.v1`` and Prometheus.

A :class:`StageStats` counts outcomes and keeps fixed-size latency histograms.
``snapshot()`` turns the figures since the last snapshot into a StageMetrics record;
:class:`PrometheusCollector` exposes the cumulative figures on a registry passed in
(labels: stage and outcome only, never user or item ids).
"""

from __future__ import annotations

import gc
import math
import resource
import time
import urllib.request
from typing import Iterable

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client import GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.registry import Collector, CollectorRegistry

from stream.core.stats import LogHistogram

OUTCOMES = ("in", "out", "rejected", "duplicate", "replay", "error", "forwarded")
#: every 4th bucket of the in-process histograms is exported (4 per decade, 1 µs .. 10 ks)
EXPORT_EVERY = 4


def rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * resource.getpagesize()
    except OSError:
        return 0


class GcPauses:
    """The longest garbage-collector pause of this process since the last :meth:`take`.

    A full (generation 2) collection walks every tracked object and stops the event loop
    while it runs; a worker holding many objects shows it as a lag spike in one window.

    >>> pauses = GcPauses().install()
    >>> _ = gc.collect()
    >>> pauses.take() > 0, pauses.take()
    (True, 0.0)
    >>> pauses.uninstall()
    """

    def __init__(self) -> None:
        self._started = 0.0
        self._longest = 0.0

    def _callback(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        elif self._started:
            self._longest = max(self._longest, time.perf_counter() - self._started)
            self._started = 0.0

    def install(self) -> "GcPauses":
        gc.callbacks.append(self._callback)
        return self

    def uninstall(self) -> None:
        gc.callbacks.remove(self._callback)

    def take(self) -> float:
        """Milliseconds of the longest pause since the last call; resets it."""
        longest, self._longest = self._longest, 0.0
        return longest * 1000


class StageStats:
    """Counters and histograms of one stage in one worker."""

    def __init__(self, stage: str) -> None:
        self.stage = stage
        self.window = dict.fromkeys(OUTCOMES, 0)
        self.messages = 0
        self.processing = LogHistogram()        # seconds per Kafka message, this window
        self.lag = LogHistogram()               # seconds from event time to processed, this window
        # cumulative figures (Prometheus) of the closed windows: the hot path updates only the
        # open window, which snapshot() folds in here
        self._closed = dict.fromkeys(OUTCOMES, 0)
        self._closed_messages = 0
        self._closed_processing = LogHistogram()
        self._closed_lag = LogHistogram()
        self.inputs: dict[str, float] = {}
        self.outputs: dict[str, float] = {}
        self.gauges: dict[str, float] = {}      # e.g. consumer_lag
        self._since = time.time()

    def count(self, outcome: str, n: int = 1) -> None:
        self.window[outcome] += n

    def message(self, seconds: float) -> None:
        self.messages += 1
        self.processing.update(seconds)

    def event_lag(self, seconds: float) -> None:
        self.lag.update(seconds)

    @property
    def totals(self) -> dict[str, int]:
        """Events by outcome since start."""
        w = self.window
        return {k: n + w[k] for k, n in self._closed.items()}

    @property
    def messages_total(self) -> int:
        return self._closed_messages + self.messages

    @property
    def processing_total(self) -> LogHistogram:
        return self._closed_processing.copy().merge(self.processing)

    @property
    def lag_total(self) -> LogHistogram:
        return self._closed_lag.copy().merge(self.lag)

    def add_input(self, name: str, n: float = 1.0) -> None:
        self.inputs[name] = self.inputs.get(name, 0.0) + n

    def add_output(self, name: str, n: float = 1.0) -> None:
        self.outputs[name] = self.outputs.get(name, 0.0) + n

    def max_output(self, name: str, value: float) -> None:
        """Keep the largest value of this window (e.g. the longest stall)."""
        self.outputs[name] = max(self.outputs.get(name, 0.0), value)

    def snapshot(self, worker: str, now: float | None = None) -> dict:
        """The StageMetrics record for the window since the last snapshot; starts a new window."""
        now = time.time() if now is None else now
        w = self.window
        ms = {k: v * 1000 for k, v in self.processing.get().items() if k != "mean"}
        lag = {k: v * 1000 for k, v in self.lag.get().items() if k != "mean"}
        record = {
            "stage": self.stage, "worker": worker, "emitted_at": int(now * 1000),
            "interval_s": round(now - self._since, 3),
            "events_in": w["in"], "events_out": w["out"], "rejected": w["rejected"],
            "duplicates": w["duplicate"], "replays": w["replay"], "errors": w["error"],
            "messages": self.messages,
            "batch_size_mean": (w["in"] / self.messages) if self.messages else 0.0,
            "processing_ms": ms, "event_lag_ms": lag,
            "consumer_lag": int(self.gauges.get("consumer_lag", -1)),
            "rss_bytes": rss_bytes(),
            "inputs": dict(self.inputs),
            "outputs": {**self.outputs, **{k: float(v) for k, v in self.gauges.items() if k != "consumer_lag"},
                        "forwarded": float(w["forwarded"])},
        }
        for k, n in w.items():
            self._closed[k] += n
        self._closed_messages += self.messages
        self._closed_processing.merge(self.processing)
        self._closed_lag.merge(self.lag)
        self.window = dict.fromkeys(OUTCOMES, 0)
        self.messages = 0
        self.processing.reset()
        self.lag.reset()
        self.inputs, self.outputs = {}, {}
        self._since = now
        return record


class PrometheusCollector(Collector):
    """Exposes the cumulative figures of some StageStats (register on a registry passed in)."""

    def __init__(self, stats: Iterable[StageStats]) -> None:
        self.stats = list(stats)

    def collect(self):
        events = CounterMetricFamily("stream_events", "Events by stage and outcome", labels=["stage", "outcome"])
        msgs = CounterMetricFamily("stream_messages", "Kafka messages consumed by stage", labels=["stage"])
        proc = HistogramMetricFamily("stream_processing_seconds", "Processing time per Kafka message",
                                     labels=["stage"])
        lag = HistogramMetricFamily("stream_event_lag_seconds", "Event time to processed", labels=["stage"])
        clag = GaugeMetricFamily("stream_consumer_lag", "Messages behind the log end (-1 unknown)",
                                 labels=["stage"])
        rss = GaugeMetricFamily("stream_rss_bytes", "Resident memory of the worker", labels=["stage"])
        mem = rss_bytes()
        extra: dict[str, GaugeMetricFamily] = {}  # other gauges a stage keeps (model metrics, ...)
        for s in self.stats:
            for key, value in s.gauges.items():
                if key == "consumer_lag":
                    continue
                name, labels = gauge_labels(key)
                fam = extra.setdefault(name, GaugeMetricFamily(f"stream_{name}", f"{name} (stage gauge)",
                                                               labels=["stage", *labels]))
                fam.add_metric([s.stage, *labels.values()], value)
        for s in self.stats:
            for outcome, n in s.totals.items():
                events.add_metric([s.stage, outcome], n)
            msgs.add_metric([s.stage], s.messages_total)
            for fam, h in ((proc, s.processing_total), (lag, s.lag_total)):
                fam.add_metric([s.stage], _export_buckets(h), sum_value=h.total)
            clag.add_metric([s.stage], s.gauges.get("consumer_lag", -1))
            rss.add_metric([s.stage], mem)
        yield from (events, msgs, proc, lag, clag, rss, *extra.values())


def gauge_labels(key: str) -> tuple[str, dict[str, str]]:
    """A stage gauge's key: ``name`` or ``name|label=value,...`` (one series per label value).

    >>> gauge_labels("model_ctr|variant=challenger")
    ('model_ctr', {'variant': 'challenger'})
    """
    name, _, rest = key.partition("|")
    return name, dict(pair.split("=", 1) for pair in rest.split(",")) if rest else {}


def _export_buckets(h: LogHistogram) -> list[tuple[str, float]]:
    cum = h.buckets()
    out = []
    for i, (bound, count) in enumerate(cum):
        if math.isinf(bound) or i % EXPORT_EVERY == 0:
            out.append(("+Inf" if math.isinf(bound) else f"{bound:.6g}", count))
    return out


def scrape(port: int, host: str = "127.0.0.1", timeout: float = 2.0) -> str | None:
    """A worker's Prometheus exposition text, or None when it does not answer."""
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=timeout) as resp:
            return resp.read().decode()
    except OSError:
        return None


def events_sample(stage: str, outcome: str) -> str:
    return f'stream_events_total{{outcome="{outcome}",stage="{stage}"}}'


def sample_value(text: str, sample: str) -> float:
    """The value of one sample (``name{labels}``) in an exposition text; 0.0 if absent.

    >>> sample_value('a{x="1"} 2.0\\nb 3.0', "b")
    3.0
    """
    prefix = sample + " "
    return next((float(line[len(prefix):]) for line in text.splitlines() if line.startswith(prefix)), 0.0)


def registry_for(stats: Iterable[StageStats]) -> CollectorRegistry:
    reg = CollectorRegistry()
    reg.register(PrometheusCollector(stats))
    # process_* (CPU seconds, resident memory, open files), python_gc_*, python_info
    ProcessCollector(registry=reg)
    GCCollector(registry=reg)
    PlatformCollector(registry=reg)
    return reg
