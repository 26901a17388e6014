"""The drift monitor's config and thresholds from the settings (and the calibrated file)."""

from __future__ import annotations

from pathlib import Path

from stream.config import Settings, read_yaml
from stream.core.drift_monitor import DEFAULT_THRESHOLDS, DriftConfig, Thresholds
from stream.errors import ConfigError

STAGES = ("input", "profiles", "predictions", "concept")


def drift_config(settings: Settings) -> DriftConfig:
    d = settings.drift
    unknown = set(d.alerting) - set(DEFAULT_THRESHOLDS)
    if unknown:
        raise ConfigError(f"setting drift.alerting: unknown statistic(s) {', '.join(sorted(unknown))} "
                          f"(known: {', '.join(DEFAULT_THRESHOLDS)})")
    return DriftConfig(window_ms=int(d.window_s * 1000), grace_ms=int(d.grace_s * 1000),
                       reference_windows=d.reference_windows, min_samples=d.min_samples, bins=d.bins,
                       clear=d.clear, alerting=d.alerting, trailing=d.trailing_windows)


def drift_thresholds(settings: Settings) -> Thresholds:
    """Per-statistic defaults from the settings, then the calibrated ``stage/quantity/statistic`` file."""
    d = settings.drift
    values = {stat: float(getattr(d, stat)) for stat in DEFAULT_THRESHOLDS}
    if d.thresholds_file:
        values.update(read_thresholds(Path(d.thresholds_file)))
    return Thresholds(values, calibrated=bool(d.thresholds_file) or not d.require_calibration)


def read_thresholds(path: Path) -> dict[str, float]:
    data = read_yaml(path, "drift thresholds")
    table = data.get("thresholds") if isinstance(data, dict) else None
    if not isinstance(table, dict):
        raise ConfigError(f"drift thresholds {path}: expected a 'thresholds' mapping of stage/quantity/statistic")
    out = {}
    for key, entry in table.items():
        value = entry.get("threshold") if isinstance(entry, dict) else entry
        parts = str(key).split("/")
        if len(parts) != 3 or parts[0] not in STAGES or parts[2] not in DEFAULT_THRESHOLDS:
            raise ConfigError(f"drift thresholds {path}: bad key {key!r} (stage/quantity/statistic, stage one of "
                              f"{', '.join(STAGES)}, statistic one of {', '.join(DEFAULT_THRESHOLDS)})")
        try:
            out[str(key)] = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"drift thresholds {path}: {key}: not a number: {value!r}") from None
    return out
