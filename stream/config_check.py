"""What settings may hold, checked when they are loaded (so `stream config` refuses what a
worker would refuse): choices, ranges, no negative or non-finite number, URLs."""

from __future__ import annotations

import math
import os
from typing import Any

from stream.errors import ConfigError

#: ``section.field`` -> the values it may take (checked when settings are loaded)
CHOICES: dict[str, tuple[str, ...]] = {
    # the embedded broker has no transactions, and exactly_once would skip the hook that
    # writes the state before the offsets (stream.app.clicks)
    "faust.processing_guarantee": ("at_least_once",),
    "faust.log_level": ("debug", "info", "warning", "error", "critical"),
    "deploy.mode": ("development", "production"),
    "rollout.automation": ("auto", "manual"),
    "kafka.security_protocol": ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"),
    "kafka.sasl_mechanism": ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"),
}
#: ``section.field`` -> inclusive (low, high) bounds
RANGES: dict[str, tuple[float, float]] = {
    "faust.web_port": (0, 65535), "stack.broker_port": (0, 65535), "stack.redis_port": (0, 65535),
    "faust.broker_session_timeout_s": (0.1, 3600), "faust.broker_commit_interval_s": (0.01, 3600),
    "monitor.interval_s": (0.05, 3600), "model.k": (1, 1000), "model.candidates": (1, 100_000),
    "model.organic_share": (0, 1), "model.explore": (0, 1), "rollout.alpha": (1e-9, 0.5),
    "drift.clear": (0, 1), "drift.bins": (2, 1000), "drift.window_s": (0.01, 86_400),
    "rollout.window_s": (0.01, 86_400), "profile.cut_interval_s": (0.01, 3600),
    "model.relations_width": (1, 10_000), "model.relations_window": (1, 1000), "profile.last_items": (1, 1000),
    "drift.trailing_windows": (0, 10_000), "model.relations_batch": (1, 100_000),
    "model.relations_stale_s": (0, 3600),
}
#: URL schemes redis.url may use (empty: the embedded stack's)
REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


def redact_url(url: str) -> str:
    """A URL with its password masked, for logs and output.

    >>> redact_url("redis://:s3cret@redis:6379/0"), redact_url("redis://127.0.0.1:6379/0")
    ('redis://:***@redis:6379/0', 'redis://127.0.0.1:6379/0')
    """
    scheme, sep, rest = url.partition("://")
    creds, at, host = rest.rpartition("@")
    if not sep or not at:
        return url
    user, colon, _ = creds.partition(":")
    return f"{scheme}://{user}{':***' if colon else ''}@{host}"


def check(settings: Any) -> None:
    """Raise ConfigError for a value outside its choices or range (see CHOICES, RANGES)."""
    for where, allowed in CHOICES.items():
        sname, fname = where.split(".")
        value = getattr(getattr(settings, sname), fname)
        if value not in allowed:
            raise ConfigError(f"setting {where}: {value!r} is not one of: {', '.join(allowed)}")
    for where, (low, high) in RANGES.items():
        sname, fname = where.split(".")
        value = getattr(getattr(settings, sname), fname)
        if not low <= value <= high:
            raise ConfigError(f"setting {where}: {value:g} is outside {low:g}..{high:g}")
    for sname, section in vars(settings).items():  # no count, duration or limit is negative
        for fname, value in vars(section).items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and not 0 <= value < math.inf:
                raise ConfigError(f"setting {sname}.{fname}: {value:g} must be a finite number >= 0")
    url = settings.redis.url
    if url and not url.startswith(REDIS_SCHEMES):
        raise ConfigError(f"setting redis.url: {redact_url(url)!r} is not a Redis URL ({', '.join(REDIS_SCHEMES)}...)")
    k = settings.kafka
    if k.security_protocol.startswith("SASL_") and not (k.sasl_username and k.sasl_password):
        raise ConfigError(f"setting kafka.security_protocol {k.security_protocol}: set kafka.sasl_username and "
                          "kafka.sasl_password (STREAM_KAFKA_SASL_USERNAME, STREAM_KAFKA_SASL_PASSWORD)")
    if bool(k.ssl_cert_file) != bool(k.ssl_key_file):
        raise ConfigError("settings kafka.ssl_cert_file and kafka.ssl_key_file: give both (mutual TLS) or neither")
    for name in ("ssl_ca_file", "ssl_cert_file", "ssl_key_file"):
        path = getattr(k, name)
        if path and not os.path.isfile(path):
            raise ConfigError(f"setting kafka.{name}: no such file {path!r}")
    for server in filter(None, settings.kafka.bootstrap_servers.split(",")):
        host, _, port = server.strip().rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) <= 65535:
            raise ConfigError(f"setting kafka.bootstrap_servers: {server.strip()!r} is not HOST:PORT")
