"""drift monitor: windowed summaries of one stage's records, compared with a reference.

One :class:`StageDrift` watches one stage's stream (input events, profiles, served
recommendations, labelled feedback). Each record is turned into named values by the
stage's extractor; each value lands in the summary of its event-time window (fixed
size: bin counts, category counts, never the events). The first ``reference_windows``
closed windows form the reference: numeric bins are fixed then, at the reference's
quantiles (while the reference is being taken, a numeric quantity keeps a bounded
reservoir sample). Every later closed window yields one report per quantity and
statistic, and an alert when a statistic crosses its threshold (with hysteresis, so a
value hovering at the threshold does not alert every window).

Missing values count as one more bin, so a field that starts arriving empty moves the
distribution (the upstream-bug case) instead of vanishing from it.

>>> from stream.core.drift_quantities import input_values
>>> cfg = DriftConfig(window_ms=1000, reference_windows=2, min_samples=10)
>>> d = StageDrift("input", input_values, cfg, Thresholds())
>>> for t in range(0, 3000, 10):  # 3 windows of one category mix ...
...     _ = d.update({"event_type": "view", "category": "c1" if t % 20 else "c2", "timestamp": t}, t)
>>> for t in range(3000, 4000, 10):  # ... then a window where the category is missing
...     _ = d.update({"event_type": "view", "category": None, "timestamp": t}, t)
>>> reports, alerts = d.close(5000)
>>> [(r["window_start"], r["value"] > 1) for r in reports if r["quantity"] == "category" and r["statistic"] == "psi"]
[(2000, False), (3000, True)]
>>> sorted({r["quantity"] for r in reports if r["alarm"]})
['category']
>>> [a["name"] for a in alerts]
['drift.input.category.psi', 'drift.input.category.js']
"""

from __future__ import annotations

import math
import random
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

from stream.core.drift import CategoricalSummary, NumericSummary, TumblingWindows, chi2, js_distance, ks, psi

from stream.core.drift_quantities import CAT, NUM, Extractor
#: statistics computed per kind of quantity; "rate_change" is |ln(events / reference mean)|
STATISTICS = {NUM: ("psi", "ks"), CAT: ("psi", "js", "chi2")}
#: statistics where a small value is the alarm (a p-value); every other one alarms when large
LOWER_IS_WORSE = frozenset({"chi2"})
DEFAULT_THRESHOLDS = {"psi": 0.25, "ks": 0.15, "js": 0.15, "chi2": 1e-6, "rate_change": 0.7,
                      "adwin": 0.5, "page_hinkley": 0.5}
#: statistics that raise alerts unless configured otherwise (chi2 p-values reach ~0 on any
#: large real stream: reported, not alerted)
DEFAULT_ALERTING = ("psi", "ks", "js", "rate_change", "adwin", "page_hinkley")

@dataclass(frozen=True)
class DriftConfig:
    window_ms: int = 5000
    grace_ms: int = 1000
    reference_windows: int = 3
    #: a window (or reference) with fewer values than this is reported but never alarms
    min_samples: int = 200
    bins: int = 10
    reservoir: int = 4000
    max_categories: int = 50
    #: an alarm clears when the value falls below threshold * clear
    clear: float = 0.5
    #: 0: the reference stays the first windows'. N: after each window, a quantity's reference
    #: is its last N windows that did not cross a threshold on it (bins stay the first
    #: reference's): slow evolution of a live stream (a model still learning, a user base
    #: turning over) is followed, a change is not, and a window that drifted never enters
    trailing: int = 0
    alerting: tuple[str, ...] = DEFAULT_ALERTING


@dataclass
class Thresholds:
    """Thresholds by ``stage/quantity/statistic``, falling back to ``stage/*/statistic``,
    then ``statistic``; a variant suffix ``score[challenger]`` falls back to ``score``.

    >>> t = Thresholds({"input/price/psi": 0.1, "predictions/*/ks": 0.3})
    >>> t.get("input", "price", "psi"), t.get("predictions", "score[champion]", "ks"), t.get("input", "x", "js")
    (0.1, 0.3, 0.15)
    """
    values: dict[str, float] = field(default_factory=dict)
    #: False until thresholds were calibrated on this deployment's own stationary stream: the
    #: values are reported, no alarm is raised (defaults alarmed 14 times on a stationary demo)
    calibrated: bool = True

    def get(self, stage: str, quantity: str, statistic: str) -> float:
        base = quantity.split("[", 1)[0]
        for key in (f"{stage}/{quantity}/{statistic}", f"{stage}/{base}/{statistic}", f"{stage}/*/{statistic}",
                    statistic):
            if key in self.values:
                return float(self.values[key])
        return DEFAULT_THRESHOLDS[statistic]


def crossed(statistic: str, value: float, threshold: float) -> bool:
    return value < threshold if statistic in LOWER_IS_WORSE else value > threshold


# -- window state --------------------------------------------------------------------------

class Reservoir:
    """A bounded uniform sample of a numeric quantity (only while the reference is taken)."""

    def __init__(self, cap: int, seed: int = 0) -> None:
        self.cap, self.values, self.seen, self.missing = cap, [], 0, 0
        self.rng = random.Random(seed)

    def update(self, x: object) -> None:
        if x is None or (isinstance(x, float) and math.isnan(x)):
            self.missing += 1
            return
        self.seen += 1
        if len(self.values) < self.cap:
            self.values.append(float(x))
        else:
            j = self.rng.randrange(self.seen)
            if j < self.cap:
                self.values[j] = float(x)

    def merge(self, other: "Reservoir") -> "Reservoir":
        pool = self.values + other.values
        self.seen += other.seen
        self.missing += other.missing
        self.values = pool if len(pool) <= self.cap else self.rng.sample(pool, self.cap)
        return self

    def summary(self, edges: list[float]) -> tuple[list[float], float, int]:
        """Bin counts scaled to everything seen, the missing count, and the values seen."""
        s = NumericSummary(edges)
        for x in self.values:
            s.update(x)
        scale = self.seen / len(self.values) if self.values else 0.0
        return [c * scale for c in s.counts], float(self.missing), self.seen


@dataclass
class Reference:
    """What the windows are compared with: per quantity, bins (numeric) and counts."""
    reference_id: str
    windows: int
    mean_events: float
    numeric: dict[str, tuple[list[float], list[float], float, int]]  # edges, counts, missing, n
    categorical: dict[str, CategoricalSummary]


class _Window:
    def __init__(self) -> None:
        self.values: dict[str, object] = {}
        self.events = 0


class StageDrift:
    """Windows, reference, statistics and alarms of one stage (see the module doc)."""

    def __init__(self, stage: str, extract: Extractor, cfg: DriftConfig, thresholds: Thresholds,
                 detectors: Callable[[], dict] | None = None) -> None:
        self.stage, self.extract, self.cfg, self.thresholds = stage, extract, cfg, thresholds
        self.windows = TumblingWindows(cfg.window_ms, cfg.grace_ms)
        self.open: dict[int, _Window] = {}
        self.kinds: dict[str, str] = {}
        self.reference: Reference | None = None
        self._pending: list[_Window] = []  # closed windows that will form the reference
        self._late_refs: dict[str, list] = {}  # quantities new since the reference: their first windows
        self.alarms: dict[tuple[str, str], bool] = {}
        self.watermark = 0
        self.late_reported = 0
        self.records = 0
        self.make_detectors = detectors
        self.detectors: dict[str, dict] = {}
        self.detections: dict[str, dict[str, int]] = {}
        #: per quantity (and "events"), its last windows' summaries that did not drift (trailing)
        self._trail: dict[str, deque] = {}

    # -- input ---------------------------------------------------------------------------
    def update(self, record: dict, ts: int) -> bool:
        """Add one record at event time ``ts`` (ms); False if its window has closed (late)."""
        start = self.windows.assign(ts)
        if start is None:
            return False
        self.records += 1
        if ts > self.watermark:
            self.watermark = ts
        win = self.open.get(start)
        if win is None:
            win = self.open[start] = _Window()
        win.events += 1
        for name, kind, value in self.extract(record):
            slot = win.values.get(name)
            if slot is None:
                self.kinds.setdefault(name, kind)
                slot = win.values[name] = self._new_slot(name, kind)
            slot.update(value)
            if self.make_detectors is not None and kind == NUM and name.startswith("log_loss") and value is not None:
                self._detect(name, float(value))
        return True

    def _new_slot(self, name: str, kind: str) -> object:
        if kind == CAT:
            return CategoricalSummary(self.cfg.max_categories)
        if self.reference is not None and name in self.reference.numeric:
            return NumericSummary(self.reference.numeric[name][0])
        return Reservoir(self.cfg.reservoir, seed=len(self.open))

    def _detect(self, name: str, loss: float) -> None:
        dets = self.detectors.get(name)
        if dets is None:
            dets = self.detectors[name] = self.make_detectors()
            self.detections[name] = dict.fromkeys(dets, 0)
        for stat, det in dets.items():
            before = getattr(det, "estimation", None)
            det.update(loss)
            # only a rise of the loss is concept drift; a model that keeps improving is not
            if det.drift_detected and (before is None or det.estimation > before):
                self.detections[name][stat] += 1

    def reset_reference(self) -> None:
        """Forget the reference (after a deliberate change); the next windows form a new one."""
        self.reference, self._pending, self._late_refs = None, [], {}
        self._trail = {}
        self.alarms.clear()
        self.detectors.clear()
        self.detections.clear()

    # -- closing -------------------------------------------------------------------------
    def close(self, watermark: int | None = None) -> tuple[list[dict], list[dict]]:
        """Close every window event time has passed: (DriftReports, Alerts)."""
        reports: list[dict] = []
        alerts: list[dict] = []
        for start in self.windows.close(self.watermark if watermark is None else watermark):
            win = self.open.pop(start)
            if self.reference is None:
                if any(isinstance(v, NumericSummary) for v in win.values.values()):
                    continue  # opened under the reference just reset: its bins cannot form the new one
                self._pending.append(win)
                if len(self._pending) >= self.cfg.reference_windows:
                    self.reference = self._build_reference(self._pending)
                    self._pending = []
                continue
            r, a = self._compare(start, win)
            reports += r
            alerts += a
        return reports, alerts

    def _build_reference(self, wins: list[_Window]) -> Reference:
        numeric, categorical = {}, {}
        for name, kind in self.kinds.items():
            slots = [w.values[name] for w in wins if name in w.values]
            if not slots:
                continue
            if kind == CAT:
                merged = CategoricalSummary(self.cfg.max_categories)
                for s in slots:
                    merged.merge(s)
                categorical[name] = merged
                continue
            res = Reservoir(self.cfg.reservoir)
            for s in slots:
                if isinstance(s, Reservoir):  # windows opened under an older reference hold bins only
                    res.merge(s)
            edges = _edges(res.values, self.cfg.bins)
            counts, missing, n = res.summary(edges)
            numeric[name] = (edges, counts, missing, n)
        for counts in self.detections.values():  # detections while the reference formed are not news
            for stat in counts:
                counts[stat] = 0
        return Reference(uuid.uuid4().hex[:12], len(wins), sum(w.events for w in wins) / len(wins),
                         numeric, categorical)

    def _adopt(self, name: str, slot: object) -> None:
        """A quantity the reference lacks (e.g. a challenger's predictions, which appear when a
        canary starts): its first ``reference_windows`` windows become its reference."""
        seen = self._late_refs.setdefault(name, [])
        seen.append(slot)
        if len(seen) < self.cfg.reference_windows:
            return
        del self._late_refs[name]
        if self.kinds[name] == CAT:
            merged = CategoricalSummary(self.cfg.max_categories)
            for s in seen:
                merged.merge(s)
            self.reference.categorical[name] = merged
            return
        res = Reservoir(self.cfg.reservoir)
        for s in seen:
            if isinstance(s, Reservoir):
                res.merge(s)
        edges = _edges(res.values, self.cfg.bins)
        self.reference.numeric[name] = (edges, *res.summary(edges))

    def _compare(self, start: int, win: _Window) -> tuple[list[dict], list[dict]]:
        ref = self.reference
        late = self.windows.late - self.late_reported
        self.late_reported = self.windows.late
        reports, alerts = [], []
        drifted: set[str] = set()

        def report(quantity: str, statistic: str, value: float, n: int, ref_n: int, enough: bool | None = None) -> None:
            threshold = self.thresholds.get(self.stage, quantity, statistic)
            if enough is None:
                enough = n >= self.cfg.min_samples and ref_n >= self.cfg.min_samples
            if enough and crossed(statistic, value, threshold):
                drifted.add(quantity)
            calibrated = self.thresholds.calibrated
            alarm = enough and calibrated and crossed(statistic, value, threshold)
            rep = {"stage": self.stage, "quantity": quantity, "statistic": statistic, "value": float(value),
                   "threshold": threshold, "alarm": alarm, "window_start": start,
                   "window_end": start + self.cfg.window_ms, "sample_size": n, "reference_size": ref_n,
                   "reference_id": ref.reference_id, "late_events": late, "calibrated": calibrated}
            reports.append(rep)
            if statistic in self.cfg.alerting and enough and calibrated:
                alert = self._hysteresis(rep)
                if alert:
                    alerts.append(alert)

        if self.stage == "input":
            # few events is what this statistic is about: only the reference needs the samples
            report("events", "rate_change", abs(math.log(max(win.events, 1) / max(ref.mean_events, 1))),
                   win.events, int(ref.mean_events), enough=ref.mean_events >= self.cfg.min_samples)
        if self.cfg.trailing and "events" not in drifted:
            self._follow("events", "count", win.events)
        for name, slot in sorted(win.values.items()):
            kind = self.kinds[name]
            if name not in (ref.categorical if kind == CAT else ref.numeric):
                self._adopt(name, slot)
                continue
            if kind == CAT:
                rc = ref.categorical[name]
                keys = sorted(set(rc.counts) | set(slot.counts))
                p = [rc.counts.get(k, 0) for k in keys] + [rc.missing]
                q = [slot.counts.get(k, 0) for k in keys] + [slot.missing]
            else:
                edges, rcounts, rmissing, _ = ref.numeric[name]
                if isinstance(slot, Reservoir):  # opened before the reference was ready
                    counts, missing, _ = slot.summary(edges)
                else:
                    counts, missing = slot.counts, slot.missing
                p, q = list(rcounts) + [rmissing], list(counts) + [missing]
            n, ref_n = int(round(sum(q))), int(round(sum(p)))
            for statistic in STATISTICS[kind]:
                report(name, statistic, _statistic(statistic, p, q), n, ref_n)
            if self.cfg.trailing and name not in drifted:
                self._follow(name, kind, slot if kind == CAT else (counts, missing))
        for name, counts in self.detections.items():
            for statistic, hits in counts.items():
                n = _count(win.values.get(name))
                report(name, statistic, float(hits), max(n, self.cfg.min_samples), self.cfg.min_samples)
                counts[statistic] = 0
        return reports, alerts

    def _follow(self, name: str, kind: str, summary: object) -> None:
        """Trailing reference: ``name``'s reference becomes its last ``trailing`` quiet windows."""
        trail = self._trail.setdefault(name, deque(maxlen=self.cfg.trailing))
        trail.append(summary)
        if len(trail) < self.cfg.trailing:
            return
        ref = self.reference
        if kind == "count":
            ref.mean_events = sum(trail) / len(trail)
        elif kind == CAT:
            merged = CategoricalSummary(self.cfg.max_categories)
            for c in trail:
                merged.merge(c)
            ref.categorical[name] = merged
        else:
            edges = ref.numeric[name][0]
            counts = [sum(col) for col in zip(*(c for c, _ in trail))]
            missing = sum(m for _, m in trail)
            ref.numeric[name] = (edges, counts, missing, int(round(sum(counts))))

    def _hysteresis(self, rep: dict) -> dict | None:
        key = (rep["quantity"], rep["statistic"])
        was = self.alarms.get(key, False)
        value, threshold, statistic = rep["value"], rep["threshold"], rep["statistic"]
        if not was:
            now = rep["alarm"]
        elif statistic in LOWER_IS_WORSE:
            now = value < threshold / self.cfg.clear
        else:
            now = value >= threshold * self.cfg.clear
        self.alarms[key] = now
        if now == was:
            return None
        name = f"drift.{self.stage}.{rep['quantity']}.{statistic}"
        verb = "drifted" if now else "back within"
        message = (f"{self.stage} drift on {rep['quantity']}: {statistic} {value:.4g} "
                   f"{'>' if now else '<'} {threshold:.4g}" if now else
                   f"{self.stage} {rep['quantity']} {verb} threshold: {statistic} {value:.4g} (threshold {threshold:.4g})")
        evidence = {k: str(rep[k]) for k in ("stage", "quantity", "statistic", "value", "threshold", "window_start",
                                             "window_end", "sample_size", "reference_size", "reference_id")}
        return {"alert_id": uuid.uuid4().hex, "name": name + ("" if now else ".cleared"),
                "severity": "WARNING" if now else "INFO", "stage": "drift", "message": message,
                "created": rep["window_end"], "model_name": None, "evidence": evidence}


def _statistic(statistic: str, p: list[float], q: list[float]) -> float:
    if statistic == "psi":
        return psi(p, q)
    if statistic == "ks":
        return ks(p, q)
    if statistic == "js":
        return js_distance(p, q)
    return chi2(p, q)[1]  # the p-value


def _edges(values: list[float], bins: int) -> list[float]:
    """The reference's decile edges (NumericSummary's own rule); none without values."""
    return NumericSummary.from_reference(values, bins).edges if values else []


def river_detectors(adwin_delta: float = 1e-6, ph_threshold: float = 500.0) -> Callable[[], dict]:
    """A factory of ADWIN and Page-Hinkley on the per-example loss (river's implementations),
    watching for increases only (ADWIN's detections count when its mean estimate went up).

    Per-example log loss is very noisy (a click costs ~2, a non-click ~0.1) and arrives by
    the thousand per window, so the river defaults (delta 0.002, threshold 50) fire every
    few windows on a stationary stream (measured); these defaults did not."""
    def make() -> dict:
        from river import drift  # noqa: PLC0415 - river is heavy; only the concept stage needs it
        return {"adwin": drift.ADWIN(delta=adwin_delta),
                "page_hinkley": drift.PageHinkley(threshold=ph_threshold, mode="up")}
    return make


def _count(slot: object) -> int:
    if slot is None:
        return 0
    return slot.seen if isinstance(slot, Reservoir) else slot.n
