"""One settings object, built once (defaults < file < environment) and passed down.

Environment variables use the prefix ``STREAM_`` followed by the section and the
field, upper-cased: ``STREAM_KAFKA_BOOTSTRAP_SERVERS``, ``STREAM_INGEST_MAX_SKEW_S``.
Lists are comma-separated. ``STREAM_CONFIG`` names a YAML settings file whose
top-level keys are the sections below. An unknown section, field or ``STREAM_``
variable is an error, so a typo never goes unnoticed.

>>> s = Settings.load(env={"STREAM_INGEST_MAX_SKEW_S": "60"})
>>> s.ingest.max_skew_s
60.0
>>> Settings.load(env={"STREAM_INGEST_NOPE": "1"})
Traceback (most recent call last):
...
stream.errors.ConfigError: unknown setting STREAM_INGEST_NOPE (section 'ingest' has no field 'nope')
"""

from __future__ import annotations

import dataclasses
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

from stream.core.ingest import IngestConfig
from stream.core.profile import ProfileConfig
from stream.config_check import check, redact_url  # noqa: F401 (re-exported)
from stream.errors import ConfigError

ENV_PREFIX = "STREAM_"
PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _default_state_dir() -> str:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return str(Path(base) / "stream")


@dataclass(frozen=True)
class KafkaSettings:
    #: bootstrap servers; empty means "the embedded stack recorded in stack.state_dir"
    bootstrap_servers: str = ""
    client_id: str = "stream"
    #: a worker whose broker has not answered for this long exits 70 with the remedy
    outage_limit_s: float = 30.0
    #: PLAINTEXT (the embedded broker) | SSL | SASL_PLAINTEXT | SASL_SSL, for every client
    security_protocol: str = "PLAINTEXT"
    #: with SASL_*: PLAIN | SCRAM-SHA-256 | SCRAM-SHA-512, and the user and password
    sasl_mechanism: str = "PLAIN"
    sasl_username: str = ""
    sasl_password: str = ""
    #: with SSL / SASL_SSL: the CA bundle that signed the brokers' certificates (empty: the
    #: system's), and a client certificate and key for mutual TLS (both or neither)
    ssl_ca_file: str = ""
    ssl_cert_file: str = ""
    ssl_key_file: str = ""


@dataclass(frozen=True)
class RedisSettings:
    #: redis:// URL; empty means "the embedded stack recorded in stack.state_dir"
    url: str = ""
    key_prefix: str = "stream:"
    #: profiles wait (newest per user) and writes are retried while Redis is down; a worker
    #: exits 70 only when it has been down longer than this
    outage_limit_s: float = 300.0


@dataclass(frozen=True)
class StackSettings:
    state_dir: str = field(default_factory=_default_state_dir)
    host: str = "127.0.0.1"
    #: 0 picks a free port at `stream up`
    broker_port: int = 0
    redis_port: int = 0
    start_timeout_s: float = 20.0


@dataclass(frozen=True)
class PathSettings:
    schemas_dir: str = str(PROJECT_ROOT / "schemas")
    topology: str = str(PROJECT_ROOT / "topologies" / "clickstream.yaml")


@dataclass(frozen=True)
class FaustSettings:
    app_id: str = "stream"
    #: Tansu holds each group join for half the session timeout: keep it short.
    broker_session_timeout_s: float = 6.0
    broker_heartbeat_interval_s: float = 1.0
    processing_guarantee: str = "at_least_once"
    producer_linger_ms: float = 5.0
    #: how long the broker may hold a fetch of Faust's consumer for more data (Faust's own
    #: value is 1500 ms) in a learn or drift worker
    fetch_max_wait_ms: int = 20
    #: the same in a clicks worker, where Faust fetches only the side topics (model
    #: control, feedback, changelogs when recovering): at 20 ms its polling doubled the clicks
    #: p99 lag at 20k events/s (broker and aiokafka CPU); the side topics can wait 200 ms
    side_fetch_wait_ms: int = 200
    #: the native reader sleeps this long when it finds nothing fetched (the most it adds to lag)
    native_idle_ms: float = 2.0
    #: the native reader's fetch wait: Tansu holds a fetch for the whole wait even when data
    #: arrives meanwhile, so this is most of the broker's share of the lag (bare consumer at
    #: 14k events/s: 20 ms -> p50 17 / p99 34 ms, 5 ms -> 11 / 23 ms, 1 ms overloads Tansu).
    #: But each idle worker at 5 ms cost Tansu ~12% of a core, which slowed the multi-worker
    #: rollout tests past their timeouts: 20 ms
    native_fetch_wait_ms: int = 20
    broker_commit_every: int = 10_000
    #: commits are where state and outputs are flushed: longer = fewer re-encodes of hot users (2.5 s: 27.6k events/s, 1 s: 22-24k)
    broker_commit_interval_s: float = 2.5
    data_dir: str = ""
    web_port: int = 6066
    #: the worker's web server (/metrics, and Faust's own /table/ and /router/ pages) listens
    #: here: loopback unless a deployment opens it (compose: 0.0.0.0 on its private network)
    web_bind: str = "127.0.0.1"
    web_enabled: bool = True
    log_level: str = "info"


#: the ingest section is the core's own config (stream.core.ingest.IngestConfig): one
#: definition of its fields and defaults
IngestSettings = IngestConfig


@dataclass(frozen=True)
class ProfileSettings(ProfileConfig):
    """The core's ProfileConfig (fold parameters) plus how the worker writes profiles out."""
    #: the checkpoint (stream.app.checkpoint) writes changed users in slices of at most this
    #: long, the event loop free for events between them
    flush_slice_budget_ms: float = 5.0
    redis_batch: int = 500
    redis_flush_interval_s: float = 0.2
    #: a checkpoint cut every this long: each user changed since the last cut is written once
    #: per cut (a crash replays about one cut: interval + spread)
    cut_interval_s: float = 2.5
    #: a cut's users are written evenly over this long (then delivered, then its input released):
    #: all at once, ~2,000 messages per cut at 1k hot users were the lag's tail
    cut_spread_s: float = 1.5


#: the registry key every checkout knows: accepted only in development mode
DEV_HMAC_KEY = "stream-dev-registry-key"


@dataclass(frozen=True)
class ModelSettings:
    name: str = "reco"
    #: HMAC key of the model registry: a blob whose HMAC does not match is never unpickled
    hmac_key: str = DEV_HMAC_KEY
    #: event types that ask for recommendations
    request_types: tuple[str, ...] = ("recommend_request",)
    k: int = 10
    candidates: int = 200
    #: model | retrieval | popularity | random (the last three are baselines)
    policy: str = "model"
    #: never | always | auto: leave items the user consumed out of the lists (auto: unless the
    #: stream shows users coming back to items; see core.recommend.Reconsumption)
    reconsume: str = "auto"
    #: labelled examples from organic positives: negatives sampled per positive, share of positives used
    organic_negatives: int = 4
    organic_share: float = 1.0
    #: join served lists with later clicks into labels on feedback.v1 (false: organic clicks only)
    served_feedback: bool = True
    #: weight of served-list feedback against organic clicks (0: scored for the metrics, not learned)
    served_weight: float = 1.0
    #: releases serve the weights averaged over about this many examples (0: the latest weights)
    average_over: int = 5000
    #: item relations (core.relations): neighbours kept per item, recent items paired, half-life
    relations_width: int = 80
    relations_window: int = 20
    relations_half_life_s: float = 30 * 86400.0
    #: interactions folded into the relations together (one vectorised pass, ~5x cheaper per
    #: event than one by one), at most relations_stale_s after the first of them was seen
    #: by a read (1: each at once)
    relations_batch: int = 64
    relations_stale_s: float = 0.1
    #: publish this scorer's interactions on relations.v1 and fold every other scorer's (the
    #: relations then do not depend on how partitions are spread over workers)
    share_relations: bool = True
    attribution_window_s: float = 30.0
    learning_rate: float = 0.02
    #: share of recommended slots explored at random (see core.recommend)
    explore: float = 0.1
    release_every_examples: int = 2000
    release_every_s: float = 20.0
    poll_interval_s: float = 1.0
    catalog_half_life_s: float = 6 * 3600.0


@dataclass(frozen=True)
class RolloutSettings:
    """Shadow / canary / blue-green of a challenger (stream.core.rollout); judged every window."""
    #: auto: the analysis acts; manual: it only recommends and an operator confirms with a command
    automation: str = "auto"
    window_s: float = 10.0
    steps: tuple[str, ...] = ("0.05", "0.10", "0.25", "0.50", "1.0")
    min_examples: int = 300
    alpha: float = 0.05
    ctr_margin: float = 0.0
    loss_margin: float = 0.0
    worse_windows: int = 2
    step_windows: int = 2
    step_examples: int = 1000


@dataclass(frozen=True)
class DriftSettings:
    """Windowed drift monitoring (stream.core.drift_monitor); thresholds per statistic here,
    per ``stage/quantity/statistic`` in ``thresholds_file`` (written by `stream drift calibrate`)."""
    window_s: float = 5.0
    grace_s: float = 1.0
    #: the first closed windows after start (or after `stream drift reset-reference`) form the reference
    reference_windows: int = 3
    #: 0: the reference stays the first windows'; N: each quantity's reference trails its last
    #: N windows that did not drift (stream.core.drift_monitor.DriftConfig.trailing)
    trailing_windows: int = 0
    min_samples: int = 200
    bins: int = 10
    #: an alarm clears when the statistic falls below threshold * clear (hysteresis)
    clear: float = 0.5
    alerting: tuple[str, ...] = ("psi", "ks", "js", "rate_change", "adwin", "page_hinkley")
    thresholds_file: str = ""
    #: without a thresholds_file (`stream drift calibrate`) the drift worker only reports:
    #: no alarm, no alert, `calibrated=false` on its reports (false: alarm at the defaults below)
    require_calibration: bool = True
    psi: float = 0.25
    ks: float = 0.15
    js: float = 0.15
    chi2: float = 1e-6
    rate_change: float = 0.7
    adwin: float = 0.5
    page_hinkley: float = 0.5
    #: river detectors on the online loss (the river defaults fire on a stationary stream)
    adwin_delta: float = 1e-6
    page_hinkley_threshold: float = 500.0
    #: a stage with no records for this long closes its windows by the wall clock
    idle_close_s: float = 15.0


@dataclass(frozen=True)
class DeploySettings:
    #: development (the embedded stack, the public development keys are accepted) | production
    #: (a worker refuses to start without its own model.hmac_key and ingest.pseudonymise_key)
    mode: str = "development"



@dataclass(frozen=True)
class MonitorSettings:
    interval_s: float = 5.0
    worker_id: str = ""
    #: /ready answers 503 while the worker is more than this many messages behind
    ready_max_lag: int = 10_000


@dataclass(frozen=True)
class Settings:
    kafka: KafkaSettings = field(default_factory=KafkaSettings)
    redis: RedisSettings = field(default_factory=RedisSettings)
    stack: StackSettings = field(default_factory=StackSettings)
    paths: PathSettings = field(default_factory=PathSettings)
    faust: FaustSettings = field(default_factory=FaustSettings)
    ingest: IngestSettings = field(default_factory=IngestSettings)
    profile: ProfileSettings = field(default_factory=ProfileSettings)
    model: ModelSettings = field(default_factory=ModelSettings)
    drift: DriftSettings = field(default_factory=DriftSettings)
    rollout: RolloutSettings = field(default_factory=RolloutSettings)
    monitor: MonitorSettings = field(default_factory=MonitorSettings)
    deploy: DeploySettings = field(default_factory=DeploySettings)

    @classmethod
    def load(cls, path: str | os.PathLike[str] | None = None,
             env: Mapping[str, str] | None = None) -> "Settings":
        """Build settings from defaults, then a YAML file, then ``STREAM_*`` variables."""
        env = os.environ if env is None else env
        overrides: dict[str, dict[str, Any]] = {}
        path = path or env.get(ENV_PREFIX + "CONFIG")
        if path:
            overrides = _read_file(Path(path))
        for name, raw in env.items():
            if not name.startswith(ENV_PREFIX) or name == ENV_PREFIX + "CONFIG":
                continue
            section, fname = _split_env_name(name)
            overrides.setdefault(section, {})[fname] = raw
        return _build(cls, overrides)

    def replace(self, **sections: dict[str, Any]) -> "Settings":
        """A copy with some fields of some sections changed (values are coerced)."""
        changed = {}
        for sname, values in sections.items():
            current = getattr(self, sname)
            changed[sname] = dataclasses.replace(current, **{
                k: _coerce(v, _field_types(type(current))[k], f"{sname}.{k}") for k, v in values.items()})
        return dataclasses.replace(self, **changed)


def core_config(section: object, cls: type) -> object:
    """A core module's typed config from a settings section, field by field (by name).

    >>> from stream.core.ingest import IngestConfig
    >>> core_config(Settings.load(env={}).ingest, IngestConfig).dedupe_ids
    32
    """
    names = {f.name for f in dataclasses.fields(cls)}
    missing = names - {f.name for f in dataclasses.fields(section)}
    if missing:
        raise ConfigError(f"settings section {type(section).__name__} lacks {', '.join(sorted(missing))} "
                          f"needed by {cls.__name__}")
    return cls(**{n: getattr(section, n) for n in names})


def _sections() -> dict[str, type]:
    return {f.name: typing.get_type_hints(Settings)[f.name] for f in dataclasses.fields(Settings)}


def _field_types(section_cls: type) -> dict[str, Any]:
    return typing.get_type_hints(section_cls)


def _split_env_name(name: str) -> tuple[str, str]:
    rest = name[len(ENV_PREFIX):].lower()
    for section in sorted(_sections(), key=len, reverse=True):
        if rest.startswith(section + "_"):
            fname = rest[len(section) + 1:]
            if fname not in _field_types(_sections()[section]):
                raise ConfigError(f"unknown setting {name} (section {section!r} has no field {fname!r})")
            return section, fname
    raise ConfigError(f"unknown setting {name} (sections: {', '.join(sorted(_sections()))})")


def read_yaml(path: Path, what: str = "settings file") -> Any:
    """A YAML file's data, or a ConfigError naming the file and what is wrong."""
    try:
        return yaml.safe_load(path.read_text()) or {}
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{what} {path} is not valid YAML: {exc}") from exc


def _read_file(path: Path) -> dict[str, dict[str, Any]]:
    data = read_yaml(path)
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise ConfigError(f"settings file {path} must map section names to mappings of fields")
    return data


def _build(cls: type[Settings], overrides: dict[str, dict[str, Any]]) -> Settings:
    sections = _sections()
    unknown = set(overrides) - set(sections)
    if unknown:
        raise ConfigError(f"unknown settings section(s): {', '.join(sorted(unknown))}")
    built = {}
    for sname, scls in sections.items():
        types = _field_types(scls)
        values = overrides.get(sname, {})
        for fname in values:
            if fname not in types:
                raise ConfigError(f"unknown setting {sname}.{fname}")
        built[sname] = scls(**{k: _coerce(v, types[k], f"{sname}.{k}") for k, v in values.items()})
    settings = cls(**built)
    check(settings)
    return settings


def production_problems(settings: Settings) -> list[str]:
    """What keeps these settings from running outside the embedded stack (empty in development).

    >>> production_problems(Settings.load(env={"STREAM_DEPLOY_MODE": "production"}))[0]
    'model.hmac_key is the public development key: set STREAM_MODEL_HMAC_KEY to a secret of 32+ characters'
    """
    if settings.deploy.mode != "production":
        return []
    problems = []
    key = settings.model.hmac_key
    if key == DEV_HMAC_KEY or len(key) < 32:
        what = "the public development key" if key == DEV_HMAC_KEY else "shorter than 32 characters"
        problems.append(f"model.hmac_key is {what}: set STREAM_MODEL_HMAC_KEY to a secret of 32+ characters")
    pkey = settings.ingest.pseudonymise_key
    if len(pkey) < 32:
        problems.append("ingest.pseudonymise_key is " + ("empty" if not pkey else "shorter than 32 characters") +
                        ": set STREAM_INGEST_PSEUDONYMISE_KEY to a secret of 32+ characters (raw user ids "
                        "would be stored)")
    if pkey and pkey == key:
        problems.append("ingest.pseudonymise_key and model.hmac_key are the same secret: use two")
    return problems


def _coerce(value: Any, typ: Any, where: str) -> Any:
    origin = typing.get_origin(typ)
    try:
        if origin is tuple:
            items = value.split(",") if isinstance(value, str) else list(value)
            return tuple(str(i).strip() for i in items if str(i).strip())
        if typ is bool:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError(f"not a boolean: {value!r}")
        if typ in (int, float):
            if isinstance(value, bool):
                raise ValueError(f"not a number: {value!r}")
            return typ(value)
        if typ is str:
            return str(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"setting {where}: {exc}") from exc
    raise ConfigError(f"setting {where}: unsupported type {typ!r}")
