"""Start and stop real `stream worker` processes for integration tests (always bounded)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from stream.monitor import events_sample, sample_value, scrape
from stream.stack import free_port, stop_pid


class WorkerProcess:
    def __init__(self, env: dict[str, str], log_dir: Path, worker_id: str, stages: str | None = None) -> None:
        self.worker_id = worker_id
        self.port = free_port()
        self.log_path = log_dir / f"worker-{worker_id}.log"
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("STREAM_")}
        full_env.update(env)
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "stream.cli", "worker", "--web-port", str(self.port), "--worker-id", worker_id,
             *(["--stages", stages] if stages else [])],
            env=full_env, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def metrics(self) -> str | None:
        return scrape(self.port)

    def ready(self) -> tuple[int, dict] | None:
        """``/ready``: (HTTP status, its JSON), or None when the worker does not answer."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/ready", timeout=2) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())
        except OSError:
            return None

    def counter(self, stage: str, outcome: str) -> float:
        return sample_value(self.metrics() or "", events_sample(stage, outcome))

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"worker {self.worker_id} exited {self.proc.returncode}: {self.log_tail()}")
            if self.metrics() is not None:
                return
            time.sleep(0.2)
        raise AssertionError(f"worker {self.worker_id} not ready in {timeout}s: {self.log_tail()}")

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            stop_pid(self.proc.pid, timeout=20)
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            pass
        self._log.close()
        return self.proc.returncode

    def log_tail(self, n: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""
