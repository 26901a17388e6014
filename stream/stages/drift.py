"""drift: the four monitored streams -> window summaries -> DriftReports and Alerts.

One :class:`~stream.core.drift_monitor.StageDrift` per monitored stage: input events
(``clicks.v1``, the events ingest accepts), profiles (``profiles.v1``), served and
shadow recommendations (``recommendations*.v1``) and labelled feedback (``feedback.v1``,
with ADWIN and Page-Hinkley on the loss). Nothing here knows Faust: the app feeds raw
values in and calls :meth:`DriftStage.close` on a timer.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from typing import Callable

from stream.adapters.output import Output
from stream.core import ingest
from stream.core.drift_monitor import DriftConfig, StageDrift, Thresholds, river_detectors
from stream.core.drift_quantities import concept_values, input_values, prediction_values, profile_values
from stream.errors import SerdeError, ValidationError
from stream.log import event
from stream.monitor import StageStats
from stream.serde import SchemaRegistry
from stream.stages.ingest import INGESTED_HEADER

log = logging.getLogger("stream.drift")
REPORT_TOPICS = {"input": "drift.input.v1", "profiles": "drift.profiles.v1", "predictions": "drift.predictions.v1",
                 "concept": "drift.concept.v1"}
#: topic -> (monitored stage, value schema)
SOURCES = {"clicks.v1": ("input", "ClickMessage"), "profiles.v1": ("profiles", "UserProfile"),
           "recommendations.v1": ("predictions", "Recommendation"),
           "recommendations.shadow.v1": ("predictions", "Recommendation"), "feedback.v1": ("concept", "Feedback")}
_TIME_FIELD = {"profiles": "last_seen", "predictions": "created", "concept": "served_at"}


class DriftStage:
    def __init__(self, cfg: DriftConfig, thresholds: Thresholds, ingest_cfg: ingest.IngestConfig,
                 registry: SchemaRegistry, out: Output, idle_close_s: float = 15.0,
                 detectors: Callable[[], dict] | None = None, attribution_ms: int = 30_000,
                 clock: Callable[[], float] = time.time) -> None:
        self.cfg, self.ingest_cfg, self.registry, self.out, self.clock = cfg, ingest_cfg, registry, out, clock
        self.idle_close_ms = int(idle_close_s * 1000)
        self.monitors = {
            "input": StageDrift("input", input_values, cfg, thresholds),
            "profiles": StageDrift("profiles", profile_values, cfg, thresholds),
            "predictions": StageDrift("predictions", prediction_values, cfg, thresholds),
            # feedback is windowed by when the recommendation was served; its labels arrive up to
            # one attribution window later, so the concept windows wait that much longer
            "concept": StageDrift("concept", concept_values, replace(cfg, grace_ms=cfg.grace_ms + attribution_ms),
                                  thresholds,
                                  detectors=detectors or river_detectors())}
        #: per stage, per (topic, partition): [highest event time, wall time of its last record]
        self.sources: dict[str, dict[tuple[str, int], list]] = {stage: {} for stage in self.monitors}
        self.stats = StageStats("drift")
        #: 0 while the thresholds are uncalibrated defaults: values reported, no alarm raised
        self.stats.gauges["drift_calibrated"] = 1.0 if thresholds.calibrated else 0.0
        self.active: dict[str, dict] = {}  # alert name -> alert, while on

    def handle(self, topic: str, value: bytes, headers: dict[str, bytes] | None = None, partition: int = 0) -> None:
        """One Kafka message of a monitored topic (undecodable ones are ingest's to dead-letter)."""
        stage, schema = SOURCES[topic]
        self.stats.count("in")
        try:
            if stage == "input":
                if headers and INGESTED_HEADER in headers:
                    return  # a copy ingest re-keyed: the original was counted
                kind, rec = self.registry.decode_clicks(value)
                records = rec["events"] if kind == "ClickBatch" else [rec]
            else:
                records = [self.registry.decode(schema, value)]
        except SerdeError:
            self.stats.count("rejected")
            return
        mon = self.monitors[stage]
        now = self.clock()
        now_ms = int(now * 1000)
        source = self.sources[stage].setdefault((topic, partition), [0, now])
        source[1] = now
        for r in records:
            if stage == "input":
                try:
                    ingest.validate(r, now_ms, self.ingest_cfg)
                except ValidationError:
                    self.stats.count("rejected")  # ingest dead-letters it; it is not part of the input
                    continue
                ts = r["timestamp"]
            else:
                ts = r[_TIME_FIELD[stage]]
            if ts > source[0]:
                source[0] = ts
            if not mon.update(r, ts):
                self.stats.add_output(f"late_{stage}")
        self.stats.count("out")

    def close(self) -> tuple[int, int]:
        """Close due windows of every stage; produce reports and alerts. Returns (reports, alerts)."""
        now = self.clock()
        n_reports = n_alerts = 0
        for stage, mon in self.monitors.items():
            reports, alerts = mon.close(self.watermark(stage, now))
            for rep in reports:
                self.out.produce(REPORT_TOPICS[stage], self.registry.encode("DriftReport", rep),
                                 key=f"{stage}/{rep['quantity']}/{rep['statistic']}".encode())
            for alert in alerts:
                self.publish_alert(alert)
            n_reports += len(reports)
            n_alerts += len(alerts)
            if reports:
                self.stats.add_output(f"windows_{stage}", len({r["window_start"] for r in reports}))
        self.stats.add_output("reports", n_reports)
        self.stats.gauges["alarms_active"] = float(len(self.active))
        self.stats.gauges["references_ready"] = float(sum(m.reference is not None for m in self.monitors.values()))
        return n_reports, n_alerts

    def watermark(self, stage: str, now: float) -> int:
        """Event time a stage has surely passed: the lowest of its partitions' highest event
        times (one partition read ahead of another must not close the other's windows: its
        events would all be late), leaving out partitions idle for ``idle_close_s``; with
        every partition idle, the wall clock minus ``idle_close_s``."""
        active = [wm for wm, seen in self.sources[stage].values() if (now - seen) * 1000 < self.idle_close_ms]
        if active:
            return min(active)
        return max(self.monitors[stage].watermark, int(now * 1000) - self.idle_close_ms)

    def publish_alert(self, alert: dict) -> None:
        name = alert["name"]
        if name.endswith(".cleared"):
            self.active.pop(name[:-len(".cleared")], None)
        else:
            self.active[name] = alert
        self.out.produce("alerts.v1", self.registry.encode("Alert", alert), key=name.encode())
        self.stats.add_output("alerts")
        event(log, "drift_alarm" if alert["severity"] != "INFO" else "drift_cleared",
              logging.WARNING if alert["severity"] != "INFO" else logging.INFO, alert=name,
              message=alert["message"], window_end=alert["evidence"].get("window_end"))

    def reset_reference(self, stages: list[str] | None = None) -> list[str]:
        done = []
        for stage in stages or list(self.monitors):
            self.monitors[stage].reset_reference()
            done.append(stage)
        self.active = {k: v for k, v in self.active.items() if k.split(".")[1] not in done}
        event(log, "drift_reference_reset", stages=",".join(done))
        return done
