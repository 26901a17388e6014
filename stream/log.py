"""Structured, greppable logs: one logfmt line per event.

>>> import logging, io
>>> buf = io.StringIO()
>>> h = logging.StreamHandler(buf); h.setFormatter(LogfmtFormatter(with_time=False))
>>> lg = logging.getLogger("doctest.log"); lg.addHandler(h); lg.setLevel("INFO")
>>> event(lg, "broker_started", port=9092, path="/tmp/a b")
>>> buf.getvalue().strip()
'level=info logger=doctest.log event=broker_started port=9092 path="/tmp/a b"'
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any


def _fmt(value: Any) -> str:
    text = str(value)
    if text == "" or any(c in text for c in ' ="\n\t'):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    return text


class LogfmtFormatter(logging.Formatter):
    """``ts=… level=… logger=… event=… key=value …``; messages without fields become ``msg=…``."""

    def __init__(self, with_time: bool = True) -> None:
        super().__init__()
        self.with_time = with_time

    def format(self, record: logging.LogRecord) -> str:
        parts = []
        if self.with_time:
            ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            parts.append(f"ts={ts}.{int(record.msecs):03d}Z")
        parts.append(f"level={record.levelname.lower()}")
        parts.append(f"logger={record.name}")
        fields = getattr(record, "fields", None)
        if fields is not None:
            parts.append(f"event={_fmt(record.getMessage())}")
            parts.extend(f"{k}={_fmt(v)}" for k, v in fields.items())
        else:
            parts.append(f"msg={_fmt(record.getMessage())}")
        if record.exc_info:
            parts.append(f"exc={_fmt(self.formatException(record.exc_info))}")
        return " ".join(parts)


class Repeats(logging.Filter):
    """Lets a client library's repeated line through ``burst`` times per ``window_s`` and then
    says how many it held back (aiokafka logged ~40 identical lines/s with its broker gone).
    The project's own events are rate-limited where they are made, and always pass.

    >>> f, clock = Repeats(burst=2, window_s=60, clock=lambda: now[0]), None
    >>> now = [0.0]
    >>> rec = lambda: logging.LogRecord("aiokafka", logging.ERROR, "", 0, "Unable connect", None, None)
    >>> [f.filter(rec()) for _ in range(4)]
    [True, True, False, False]
    >>> now[0] = 61.0
    >>> r = rec(); f.filter(r), r.getMessage()
    (True, 'Unable connect [2 more like it in the last 60s]')
    """

    def __init__(self, burst: int = 3, window_s: float = 60.0, clock: Any = time.monotonic) -> None:
        super().__init__()
        self.burst, self.window_s, self.clock = burst, window_s, clock
        self.seen: dict[tuple[str, Any], list] = {}  # (logger, template) -> [window start, passed, held]

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith("stream"):
            return True
        key = (record.name, record.msg)
        now = self.clock()
        state = self.seen.get(key)
        if state is None or now - state[0] >= self.window_s:
            held = state[2] if state else 0
            self.seen[key] = [now, 1, 0]
            if held:
                record.msg = f"{record.msg} [{held} more like it in the last {self.window_s:.0f}s]"
            if len(self.seen) > 10_000:  # templates, not values: never grows far; bounded anyway
                self.seen.clear()
            return True
        if state[1] < self.burst:
            state[1] += 1
            return True
        state[2] += 1
        return False


def event(logger: logging.Logger, name: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log one structured event: ``event(log, "topic_created", topic="clicks.v1")``."""
    logger.log(level, name, extra={"fields": fields})


def configure(level: str = "info", stream: Any = None) -> None:
    """Route every logger through logfmt on stderr; quiet the chatty client libraries."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(LogfmtFormatter())
    handler.addFilter(Repeats())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiokafka at DEBUG costs 5-10% CPU under Faust; its INFO is also noisy.
    for noisy in ("aiokafka", "kafka", "faust.transport", "mode.timers"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def logging_config(level: str) -> dict:
    """The same logfmt routing as a ``logging.config`` dict (what a Faust worker takes)."""
    return {"version": 1, "disable_existing_loggers": False,
            "formatters": {"logfmt": {"()": LogfmtFormatter}},
            "filters": {"repeats": {"()": Repeats}},
            "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "logfmt", "stream": "ext://sys.stderr",
                                    "filters": ["repeats"]}},
            "root": {"level": level.upper(), "handlers": ["stderr"]},
            "loggers": {name: {"level": "WARNING"} for name in ("aiokafka", "faust", "mode", "kafka")}}
