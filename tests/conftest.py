"""Shared fixtures: a real Tansu broker and a real Valkey server on random free ports.

Started once per test session through the project's own :class:`stream.stack.Stack`
(in a temporary state directory) and always stopped, also when tests fail.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from stream.config import Settings
from stream.stack import Stack


@dataclass
class StackInfo:
    bootstrap: str
    redis_url: str
    settings: Settings
    state_dir: Path


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory):
    state_dir = tmp_path_factory.mktemp("stack")
    settings = Settings.load(env={"STREAM_STACK_STATE_DIR": str(state_dir)})
    st = Stack(settings)
    try:
        procs, _ = st.up()
        settings = settings.replace(kafka={"bootstrap_servers": procs["broker"].endpoint},
                                    redis={"url": procs["redis"].endpoint})
        yield StackInfo(procs["broker"].endpoint, procs["redis"].endpoint, settings, state_dir)
    finally:
        st.down()


@pytest.fixture(scope="session")
def topics(stack: StackInfo):
    """Every topic of the topology, created once on the session broker."""
    from stream.adapters.kafka import ensure_topology
    from stream.topology import Topology
    topology = Topology.load()
    ensure_topology(stack.bootstrap, topology)
    return topology


@pytest.fixture
def unique() -> str:
    return uuid.uuid4().hex[:8]


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 60.0,
            check: bool = False) -> subprocess.CompletedProcess:
    """Run ``python -m stream.cli ARGS`` with a clean STREAM_* environment plus ``env``."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("STREAM_")}
    full_env.update(env or {})
    proc = subprocess.run([sys.executable, "-m", "stream.cli", *args], env=full_env, capture_output=True,
                          text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"stream {' '.join(args)} exited {proc.returncode}: {proc.stderr}")
    return proc


def stack_env(info: StackInfo) -> dict[str, str]:
    return {"STREAM_KAFKA_BOOTSTRAP_SERVERS": info.bootstrap, "STREAM_REDIS_URL": info.redis_url,
            "STREAM_STACK_STATE_DIR": str(info.state_dir)}
