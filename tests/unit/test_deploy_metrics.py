"""The alert rules and the dashboard ask only for series the workers export: a renamed gauge
or a rule on a metric nobody sets would otherwise go quiet without anyone noticing."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client import generate_latest

from stream.monitor import StageStats, gauge_labels, registry_for

ROOT = Path(__file__).resolve().parents[2]
NAME = re.compile(r"(?<![:\w])((?:stream|process)_[a-z_]+)")  # not recording rules (a:b:c)


def _asked_for() -> set[str]:
    rules = (ROOT / "deploy/prometheus/alerts.yml").read_text()
    exprs = [line for line in rules.splitlines() if not line.lstrip().startswith("#")]
    dash = json.loads((ROOT / "deploy/grafana/dashboards/stream.json").read_text())
    exprs += [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    return {m for e in exprs for m in NAME.findall(e) if m not in ("stream_worker",)}  # job="stream-worker"


def _gauge_keys_in_code() -> set[str]:
    """Every stage gauge the code sets (``gauges["x"]``, ``g[f"x|..."]``, ``g[f"model_{k}..."]``)."""
    keys = set()
    for src in (ROOT / "stream").rglob("*.py"):
        text = src.read_text()
        for m in re.finditer(r'(?:gauges|\bg)\[f?"([a-z_{}]+)', text):
            keys.add(m.group(1))
        for m in re.finditer(r'f"([a-z_{}]+)\|[a-z]+=\{', text):  # labelled gauges built as f-strings
            keys.add(m.group(1))
    return keys


def test_every_series_the_rules_and_dashboard_use_is_exported():
    stats = StageStats("ingest")
    text = generate_latest(registry_for([stats])).decode()
    exported = {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and not line.startswith("#")}
    gauges = _gauge_keys_in_code()
    model_metrics = {"log_loss", "auc", "ctr", "hit_rate", "examples"}  # core.learn VariantMetrics.get
    missing = []
    for name in sorted(_asked_for()):
        if name in exported or name.removesuffix("_bucket") + "_count" in exported:
            continue
        gauge = name.removeprefix("stream_")
        if gauge in gauges or (gauge.startswith("model_") and gauge.removeprefix("model_") in model_metrics
                               and "model_{k}" in gauges):
            continue
        missing.append(name)
    assert not missing, f"asked for but never exported: {missing}"
    assert {"process_cpu_seconds_total", "process_resident_memory_bytes"} <= exported


def test_a_labelled_stage_gauge_is_one_series_per_label_value():
    stats = StageStats("learn")
    stats.gauges["model_ctr|traffic=champion"] = 0.2
    stats.gauges["model_ctr|traffic=challenger"] = 0.3
    text = generate_latest(registry_for([stats])).decode()
    assert 'stream_model_ctr{stage="learn",traffic="champion"} 0.2' in text
    assert 'stream_model_ctr{stage="learn",traffic="challenger"} 0.3' in text
    assert gauge_labels("ready") == ("ready", {})
