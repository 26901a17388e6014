"""Argument types for the ``stream`` commands (every value is checked where it is parsed), and
their progress line.

A bad value ends the command with argparse's one line (``stream X: error: argument --n: ...``)
and exit 2, before anything connects to a broker or starts a process.

>>> count(1)("12")
12
>>> count(1)("0")
Traceback (most recent call last):
argparse.ArgumentTypeError: must be an integer >= 1, got 0
>>> number(0, 1)("1.5")
Traceback (most recent call last):
argparse.ArgumentTypeError: must be within [0, 1], got 1.5
>>> number(0, 3600, low_open=True)("0")
Traceback (most recent call last):
argparse.ArgumentTypeError: must be within (0, 3600], got 0
>>> port("70000")
Traceback (most recent call last):
argparse.ArgumentTypeError: must be a TCP port within [0, 65535], got 70000
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path
from typing import Callable

LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


def count(low: int = 0, high: int | None = None) -> Callable[[str], int]:
    """An integer within ``[low, high]`` (no upper bound when ``high`` is None)."""
    def parse(raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {raw!r}") from None
        if value < low or (high is not None and value > high):
            bound = f">= {low}" if high is None else f"within [{low}, {high}]"
            raise argparse.ArgumentTypeError(f"must be an integer {bound}, got {value}")
        return value
    parse.__name__ = "integer"
    return parse


def number(low: float, high: float = math.inf, low_open: bool = False) -> Callable[[str], float]:
    """A finite number within ``[low, high]`` (``(low, high]`` when ``low_open``)."""
    def parse(raw: str) -> float:
        try:
            value = float(raw)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {raw!r}") from None
        too_low = value <= low if low_open else value < low
        if not math.isfinite(value) or too_low or value > high:
            left = "(" if low_open else "["
            right = f"{high:g}]" if math.isfinite(high) else "inf)"
            raise argparse.ArgumentTypeError(f"must be within {left}{low:g}, {right}, got {raw}")
        return value
    parse.__name__ = "number"
    return parse


def port(raw: str) -> int:
    """A TCP port; 0 asks for a free one."""
    try:
        value = int(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {raw!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a TCP port within [0, 65535], got {value}")
    return value


def out_file(raw: str) -> str:
    """A file the command will write: its folder must exist and be writable, and it must not be a folder."""
    path = Path(raw)
    if not raw or path.is_dir():
        raise argparse.ArgumentTypeError(f"{raw!r} is a folder, not a file")
    parent = path.resolve().parent
    if not parent.is_dir():
        raise argparse.ArgumentTypeError(f"folder {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise argparse.ArgumentTypeError(f"folder {parent} is not writable")
    return raw


def log_level(raw: str) -> str:
    if raw.lower() not in LOG_LEVELS:
        raise argparse.ArgumentTypeError(f"must be one of {', '.join(LOG_LEVELS)}, got {raw!r}")
    return raw.lower()


def stages(raw: str) -> tuple[str, ...]:
    """A comma-separated list of the stages a worker runs: at least one, each known, none twice."""
    from stream.stages import STAGES
    names = tuple(s.strip() for s in raw.split(",") if s.strip())
    unknown = [n for n in names if n not in STAGES]
    if not names or unknown:
        what = f"unknown stage(s) {', '.join(unknown)}" if unknown else "no stage named"
        raise argparse.ArgumentTypeError(f"{what}; choose from {', '.join(STAGES)}")
    if len(set(names)) < len(names):
        raise argparse.ArgumentTypeError(f"a stage named twice in {raw!r}")
    return names


class Progress:
    """One line on stderr at most every second: done/total, rate, ETA."""

    def __init__(self, what: str, total: int, stream=sys.stderr) -> None:  # noqa: ANN001
        self.what, self.total, self.stream = what, total, stream
        self.t0 = self.last = time.monotonic()
        self.first: int | None = None
        self.printed = False

    def __call__(self, done: int) -> None:
        now = time.monotonic()
        if self.first is None:  # the rate counts from the first event (not the set-up before it)
            self.first, self.t0, self.last = done, now, now
            return
        if now - self.last < 1.0 and done < self.total:
            return
        self.last = now
        self.printed = True
        rate = (done - self.first) / max(now - self.t0, 1e-9)
        eta = (self.total - done) / rate if rate > 0 else float("inf")
        width = 24
        filled = int(width * done / max(1, self.total))
        print(f"\rstream: {self.what} [{'#' * filled}{'.' * (width - filled)}] {done:,}/{self.total:,} "
              f"{rate:,.0f}/s ETA {eta:,.0f}s ", end="", file=self.stream, flush=True)

    def done(self) -> None:
        if self.printed:  # end the progress line
            print(file=self.stream, flush=True)
