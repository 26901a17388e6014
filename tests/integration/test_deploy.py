"""The shipped deployment files are valid for their real tools (promtool, docker-compose)."""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} not installed (scripts/setup.sh installs promtool when run as root)")
    return path


def run(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env=None if env is None else {**os.environ, **env})


def test_prometheus_config_and_alert_rules_are_valid():
    promtool = tool("promtool")
    res = run(promtool, "check", "config", "deploy/prometheus/prometheus.yml")
    assert res.returncode == 0, res.stdout + res.stderr
    res = run(promtool, "test", "rules", "deploy/prometheus/tests/alerts_test.yml")
    assert res.returncode == 0 and "SUCCESS" in res.stdout, res.stdout + res.stderr


def test_alert_rules_use_the_metrics_the_worker_exposes():
    rules = (ROOT / "deploy/prometheus/alerts.yml").read_text()
    for name in ("stream_events_total", "stream_processing_seconds_bucket", "stream_consumer_lag"):
        assert name in rules


def test_grafana_dashboard_parses():
    dash = json.loads((ROOT / "deploy/grafana/dashboards/stream.json").read_text())
    assert dash["panels"] and any(v["name"] == "stage" for v in dash["templating"]["list"])


def test_docker_compose_file_is_valid():
    compose = shutil.which("docker-compose")
    if compose is None:
        pytest.skip("docker-compose (v1) not installed; it only validates the file here")
    res = run(compose, "-f", "docker-compose.yml", "config", "--services")
    assert res.returncode != 0 and "STREAM_MODEL_HMAC_KEY" in res.stderr  # the secrets are required
    secrets = {"STREAM_MODEL_HMAC_KEY": "h" * 40, "STREAM_INGEST_PSEUDONYMISE_KEY": "p" * 40}
    res = run(compose, "-f", "docker-compose.yml", "config", "--services", env=secrets)
    assert res.returncode == 0, res.stderr
    assert {"kafka", "redis", "worker", "prometheus", "grafana", "topics"} <= set(res.stdout.split())
