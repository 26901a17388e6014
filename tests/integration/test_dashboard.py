"""`stream dashboard` against a running pipeline (real broker, Redis, a clicks+learn worker and a drift
worker, the closed-loop simulator), loaded in headless Chromium: every chart holds a line, the stage
table shows ingest's rate, the drift, alert and dead-letter tables are filled.

With ``DASHBOARD_SCREENSHOT=docs/dashboard.png`` it also writes the screenshot the docs show."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from html.parser import HTMLParser
from pathlib import Path

import pytest

from stream.adapters.kafka import producer
from stream.loadgen import produce_workload
from stream.simulator import ClosedLoop
from stream.stack import free_port, wait_until
from stream.workload import Workload
from tests.conftest import run_cli
from tests.integration.pipeline import CLICKS, fresh_stack
from tests.integration.workers import WorkerProcess

pytestmark = pytest.mark.integration
CHROMIUM = shutil.which("chromium")
CHARTS = ("in_per_s", "lag_events", "model_version", "ctr", "log_loss")
SIM_S = 75.0
ENV = {"STREAM_MODEL_ATTRIBUTION_WINDOW_S": "3", "STREAM_MODEL_RELEASE_EVERY_EXAMPLES": "300",
       "STREAM_MODEL_RELEASE_EVERY_S": "4", "STREAM_MODEL_POLL_INTERVAL_S": "0.5",
       "STREAM_DRIFT_WINDOW_S": "2", "STREAM_DRIFT_GRACE_S": "0.3", "STREAM_DRIFT_REFERENCE_WINDOWS": "2",
       "STREAM_DRIFT_MIN_SAMPLES": "50", "STREAM_DRIFT_IDLE_CLOSE_S": "3"}


class Page(HTMLParser):
    """What the dumped DOM holds: points per polyline of each chart, the stage rows' cells, each table's text."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.lines: dict[str, list[int]] = {}
        self.stages: dict[str, list[str | None]] = {}
        self.text: dict[str, str] = {}
        self._chart = self._row = self._table = None
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list) -> None:
        a = dict(attrs)
        if tag == "svg" and "chart" in (a.get("class") or ""):
            self._chart = a["id"].removeprefix("chart-")
            self.lines.setdefault(self._chart, [])
        elif tag == "polyline" and self._chart:
            self.lines[self._chart].append(len(a.get("points", "").split()))
        elif tag == "table":
            self._table = a.get("id")
            self.text.setdefault(self._table, "")
        elif tag == "tr" and "data-stage" in a:
            self._row = self.stages.setdefault(a["data-stage"], [])
        elif tag == "td" and self._row is not None:
            self._row.append(a.get("data-value"))

    def handle_endtag(self, tag: str) -> None:
        if tag == "svg":
            self._chart = None
        elif tag == "tr":
            self._row = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data: str) -> None:
        if self._table:
            self.text[self._table] += data + " "


def chromium(url: str, out_dir: Path, *flags: str, timeout: float = 90.0) -> str:
    """Headless Chromium on ``url``, in a session of its own (stopped as a group on a timeout); its stdout."""
    cmd = [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=8000",
           f"--user-data-dir={out_dir / 'chromium-profile'}", *flags, url]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True, text=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=10)
        raise AssertionError(f"chromium did not finish within {timeout:g}s") from None
    assert proc.returncode == 0, f"chromium exited {proc.returncode}"
    return out


def snapshot(port: int) -> dict | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/snapshot", timeout=5) as resp:
            return json.loads(resp.read())
    except OSError:
        return None


def points(column: list) -> int:
    return sum(v is not None for v in column)


def full(snap: dict | None) -> bool:
    """Every part of the page has something to show (each chart at least two points)."""
    if not snap:
        return False
    s = snap["series"]
    ingest = [r for r in snap["stages"] if r["stage"] == "ingest"]
    return (bool(ingest) and ingest[0]["in_per_s"] > 0 and points(s["model_version"]) >= 2
            and all(any(points(col) >= 2 for col in s[name].values()) for name in ("in_per_s", "lag_events", "ctr", "log_loss"))
            and bool(snap["drift_stats"]) and bool(snap["dead_letters"])
            and any(a["name"] == "rollout.refused" for a in snap["alerts"]))


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (Debian package `chromium`; "
                                              "scripts/setup.sh installs it when run as root)")
def test_the_dashboard_of_a_running_pipeline_draws_every_chart_in_chromium(tmp_path):
    with fresh_stack(tmp_path) as env:
        env = {**env, **ENV}
        boot = env["STREAM_KAFKA_BOOTSTRAP_SERVERS"]
        main = WorkerProcess(env, tmp_path, "main")
        drift = WorkerProcess(env, tmp_path, "drift", stages="drift")
        dash = sim = None
        log_path = tmp_path / "dashboard.log"
        try:
            main.wait_ready()
            drift.wait_ready()
            assert wait_until(lambda: "event=partitions_assigned" in main.log_path.read_text(), 60, 0.2), main.log_tail()
            # rejects for the dead-letter table: 10% of 1,000 events malformed
            produce_workload(producer(boot), CLICKS, Workload(seed=5, users=50, user_prefix="m"), events=1_000,
                             batch_size=50, malformed_share=0.1)
            loop = ClosedLoop(boot, Workload(seed=3, users=200), rate=300, seed=1, batch_ms=50)
            sim = threading.Thread(target=loop.run, args=(SIM_S,), daemon=True)
            sim.start()
            port = free_port()
            with open(log_path, "wb") as log:
                dash = subprocess.Popen([sys.executable, "-m", "stream.cli", "dashboard", "--port", str(port),
                                         "--refresh", "1", "--since", "300"],
                                        env={**{k: v for k, v in os.environ.items() if not k.startswith("STREAM_")}, **env},
                                        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            assert wait_until(lambda: "stream dashboard: serving" in log_path.read_text() or dash.poll() is not None,
                              30, 0.1), log_path.read_text()
            assert f"serving http://127.0.0.1:{port}/ (from monitor.*.v1, alerts.v1, drift.*.v1, clicks.dlq.v1)" \
                in log_path.read_text()
            run_cli("model", "advance", env=env, timeout=60)  # nothing to advance: the learner's refusal is an alert
            assert wait_until(lambda: full(snapshot(port)), 120, 1.0), json.dumps(snapshot(port))[:3000]

            page = Page(chromium(f"http://127.0.0.1:{port}/", tmp_path, "--dump-dom"))
            for name in CHARTS:
                assert page.lines.get(name) and max(page.lines[name]) >= 2, (name, page.lines)
            assert float(page.stages["ingest"][2]) > 0, page.stages
            assert {"ingest", "profile", "score", "learn"} <= set(page.stages), page.stages
            assert "rollout.refused" in page.text["alerts"], page.text["alerts"]
            assert "clicks.v1[" in page.text["dlq"] and "no dead letter" not in page.text["dlq"], page.text["dlq"]
            assert "no drift report yet" not in page.text["drift"] and "input" in page.text["drift"], page.text["drift"]
            assert "champion" in page.text["model"], page.text["model"]

            shot = os.environ.get("DASHBOARD_SCREENSHOT")
            if shot:
                chromium(f"http://127.0.0.1:{port}/", tmp_path, "--window-size=1400,1000",
                         f"--screenshot={Path(shot).resolve()}", "--hide-scrollbars")
                assert Path(shot).stat().st_size > 20_000
        finally:
            if dash is not None and dash.poll() is None:
                dash.terminate()  # SIGTERM: the dashboard stops cleanly and says so
                try:
                    dash.wait(15)
                except subprocess.TimeoutExpired:
                    dash.kill()
                    dash.wait(5)
            if sim is not None:
                sim.join(SIM_S + 30)
            drift.stop()
            main.stop()
        assert dash.returncode == 0, log_path.read_text()[-2000:]
        assert "event=dashboard_stopped" in log_path.read_text() and "reason=SIGTERM" in log_path.read_text()
