"""One runner for every stage: decode, call the stage handlers, route rejects, time, count.

The runner knows nothing of Faust. The app layer hands it each raw Kafka message; the
runner decodes it (a single event or a batch envelope), passes every event through
the stage handlers in order, and applies one error policy:

- undecodable message (``SerdeError``) -> dead letter (whole message), continue;
- ``ValidationError`` from a handler    -> dead letter (that event, re-encoded), continue;
- any other exception from a handler    -> dead letter with reason ``stage_error``,
  counted as an error, continue; more than ``max_errors`` of them in a row means the
  stage itself is broken: :class:`FatalStageError` is raised and the worker stops with
  a non-zero exit. Infrastructure faults (``BrokerError``/``StoreError``) are fatal.

Nothing is dropped silently: every event ends as an output, a counted duplicate or
replay, or a dead letter.
"""

from __future__ import annotations

import logging
import time
from types import MappingProxyType
from typing import Callable, Mapping, NamedTuple, Protocol, Sequence

from stream.core.profile import Position
from stream.errors import BrokerError, SerdeError, StoreError, StreamError, ValidationError
from stream.log import event
from stream.monitor import StageStats
from stream.serde import CLICK_BATCH, SchemaRegistry

log = logging.getLogger("stream.runner")


NO_HEADERS: Mapping[str, bytes] = MappingProxyType({})


class RawMessage(NamedTuple):
    """One Kafka message as the stages see it (a tuple: made once per message, cheaply)."""
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Mapping[str, bytes] = NO_HEADERS
    timestamp_ms: int = 0


class FatalStageError(StreamError):
    """The stage cannot go on; the worker must stop with a non-zero exit."""


class Handler(Protocol):
    """A stage's per-event step. Returns the event for the next stage, or None if consumed."""
    stats: StageStats

    def handle(self, ev: dict, pos: Position, msg: RawMessage) -> dict | None: ...


class DeadLetters(Protocol):
    def send(self, stage: str, exc: BaseException, reason: str, msg: RawMessage, raw: bytes,
             batch_index: int | None) -> None: ...


class StageRunner:
    def __init__(self, handlers: Sequence[Handler], dlq: DeadLetters, registry: SchemaRegistry, *,
                 max_errors: int = 100, clock: Callable[[], float] = time.time) -> None:
        self.handlers = list(handlers)
        self.dlq = dlq
        self.registry = registry
        self.max_errors = max_errors
        self.errors_in_a_row = 0
        self.clock = clock
        self.first = self.handlers[0].stats

    def process(self, msg: RawMessage) -> None:
        t0 = time.perf_counter()
        first = self.first
        try:
            kind, value = self.registry.decode_clicks(msg.value or b"")
        except SerdeError as exc:
            first.count("in")
            first.count("rejected")
            self.dlq.send(first.stage, exc, "undecodable", msg, msg.value or b"", None)
            first.message(time.perf_counter() - t0)
            return
        if kind == CLICK_BATCH:
            events, batched = value["events"], True
        else:
            events, batched = [value], False
        first.count("in", len(events))
        partition, offset = msg.partition, msg.offset
        for i, ev in enumerate(events):
            pos = Position(partition, offset, i)
            failed = False
            for h in self.handlers:
                try:
                    ev = h.handle(ev, pos, msg)
                except ValidationError as exc:
                    h.stats.count("rejected")
                    self._dead(h.stats.stage, exc, exc.reason, msg, ev, i if batched else None)
                    break  # a rejected record is the stage working as designed: not a fault
                except (BrokerError, StoreError) as exc:
                    raise FatalStageError(f"stage {h.stats.stage}: infrastructure fault: {exc}") from exc
                except Exception as exc:  # a bug or an unforeseen input: keep the record, count, go on
                    h.stats.count("error")
                    failed = True
                    self.errors_in_a_row += 1
                    event(log, "stage_error", logging.ERROR, stage=h.stats.stage, topic=msg.topic,
                          partition=partition, offset=offset, index=i, error=f"{type(exc).__name__}: {exc}")
                    self._dead(h.stats.stage, exc, "stage_error", msg, ev, i if batched else None)
                    if self.errors_in_a_row > self.max_errors:
                        raise FatalStageError(f"stage {h.stats.stage}: {self.errors_in_a_row} errors in a row, "
                                              f"last: {type(exc).__name__}: {exc}") from exc
                    break
                if ev is None:
                    break
            if not failed:
                self.errors_in_a_row = 0
        elapsed = time.perf_counter() - t0
        for h in self.handlers:
            h.stats.message(elapsed)

    def _dead(self, stage: str, exc: BaseException, reason: str, msg: RawMessage, ev: dict,
              batch_index: int | None) -> None:
        if batch_index is None:
            raw = msg.value or b""
        else:
            try:
                raw = self.registry.encode_click(ev)
            except SerdeError:
                raw = msg.value or b""
        self.dlq.send(stage, exc, reason, msg, raw, batch_index)
