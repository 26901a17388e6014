"""The shipped deployment files are valid for their real tools (promtool, docker-compose)."""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from stream.stages import STAGES

ROOT = Path(__file__).resolve().parents[2]


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} not installed (scripts/setup.sh installs it with apt when run as root)")
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
    assert res.returncode != 0 and "set STREAM_" in res.stderr  # the secrets are required
    secrets = {"STREAM_MODEL_HMAC_KEY": "h" * 40, "STREAM_INGEST_PSEUDONYMISE_KEY": "p" * 40,
               "STREAM_REDIS_PASSWORD": "r" * 24, "STREAM_KAFKA_SASL_PASSWORD": "k" * 24}
    for missing in secrets:  # each one is required
        res = run(compose, "-f", "docker-compose.yml", "config", "--services",
                  env={k: v for k, v in secrets.items() if k != missing})
        assert res.returncode != 0 and missing in res.stderr, missing  # Redis is not left open either
    res = run(compose, "-f", "docker-compose.yml", "config", "--services", env=secrets)
    assert res.returncode == 0, res.stderr
    assert {"kafka", "redis", "worker", "learner", "drift", "prometheus", "alertmanager", "grafana",
            "topics"} <= set(res.stdout.split())
    res = run(compose, "-f", "docker-compose.yml", "config", env=secrets)
    services = yaml.safe_load(res.stdout)["services"]
    stages = {}  # stage -> the services that run it
    for name, svc in services.items():
        cmd = svc.get("command") or []
        if cmd[:1] == ["worker"]:
            assert svc["environment"]["STREAM_DEPLOY_MODE"] == "production"
            assert "/ready" in " ".join(svc["healthcheck"]["test"]), name  # healthy = ready
            for stage in cmd[cmd.index("--stages") + 1].split(","):
                stages.setdefault(stage, []).append(name)
    assert set(stages) == set(STAGES), stages  # the whole service, every stage somewhere
    assert stages["learn"] == ["learner"] and stages["drift"] == ["drift"]  # one of each, own service
    assert all(services[s].get("healthcheck") for s in ("kafka", "redis", "prometheus", "alertmanager", "grafana"))
    assert "--requirepass" in services["redis"]["command"]
    assert services["worker"]["environment"]["STREAM_REDIS_URL"] == f"redis://:{'r' * 24}@redis:6379/0"
    # Kafka: clients authenticate with SASL; the broker's client listener requires it
    kafka_env = services["kafka"]["environment"]
    assert "CLIENT:SASL_PLAINTEXT" in kafka_env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"]
    assert f'user_stream="{"k" * 24}"' in kafka_env["KAFKA_LISTENER_NAME_CLIENT_PLAIN_SASL_JAAS_CONFIG"]
    for name, svc in services.items():
        env = svc.get("environment") or {}
        if env.get("STREAM_KAFKA_BOOTSTRAP_SERVERS"):  # every stream service
            assert env["STREAM_KAFKA_SECURITY_PROTOCOL"] == "SASL_PLAINTEXT", name
            assert env["STREAM_KAFKA_SASL_PASSWORD"] == "k" * 24, name


def test_prometheus_scrapes_every_stream_service_and_sends_to_alertmanager():
    conf = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    job = next(j for j in conf["scrape_configs"] if j["job_name"] == "stream-worker")
    assert set(job["dns_sd_configs"][0]["names"]) == {"worker", "learner", "drift"}
    assert conf["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == ["alertmanager:9093"]


def test_alertmanager_config_is_valid():
    amtool = tool("amtool")
    res = run(amtool, "check-config", "deploy/alertmanager/alertmanager.yml")
    assert res.returncode == 0 and "SUCCESS" in res.stdout, res.stdout + res.stderr
