"""A fast output port: one confluent-kafka producer per worker for every stage output.

Faust's own send path costs ~170 µs per message here (measured); librdkafka's
``produce`` costs a few µs. Outputs are at-least-once: before Faust commits input offsets
the worker waits (:meth:`Output.wait_delivered`) until every output produced up to that
point is acknowledged, so nothing acknowledged is ever lost.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Mapping

from confluent_kafka import KafkaError, KafkaException, Producer

from stream.adapters.kafka import QUIET, client_conf
from stream.errors import BrokerError
from stream.log import event

log = logging.getLogger("stream.output")


class Output:
    """``produce()`` never blocks for long; ``flush()`` waits for every delivery or raises."""

    def __init__(self, bootstrap: str, *, linger_ms: float = 5.0, client_id: str = "stream") -> None:
        self._producer = Producer(client_conf(bootstrap, **{"client.id": client_id, "linger.ms": linger_ms,
            "batch.num.messages": 10_000, "queue.buffering.max.messages": 2_000_000,
            "queue.buffering.max.kbytes": 1_048_576, "enable.idempotence": False, "acks": "all",
            # connection errors reach error_cb (logged below, rate-limited); librdkafka's own
            # stderr lines for them (one per retry) are left out
            "error_cb": self._on_error, **QUIET}))
        self.bootstrap = bootstrap
        #: since when no broker has answered (None: connected, or never failed)
        self.broker_down_since: float | None = None
        self._errors_logged = 0
        self._errors = 0
        self.failed = 0
        self.sent = 0
        self._last_error: str | None = None
        #: sequence numbers of messages not yet acknowledged, oldest first (dict keeps order)
        self._unacked: dict[int, None] = {}
        self.last_seq = -1

    def _on_error(self, err: KafkaError) -> None:
        if err.fatal():
            self._last_error = str(err)
        if err.code() in (KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT) and self.broker_down_since is None:
            self.broker_down_since = time.monotonic()
        self._errors += 1
        if self._errors <= 5 or self._errors % 100 == 0:  # greppable, never a flood
            event(log, "producer_error", logging.WARNING, error=str(err), errors=self._errors)

    def _acked(self, seq: int, err: KafkaError | None) -> None:
        self._unacked.pop(seq, None)
        if err is not None:
            self.failed += 1
            self._last_error = str(err)
        else:
            self.broker_down_since = None

    def broker_answers(self, timeout: float = 2.0) -> bool:
        """Ask the broker for metadata (blocking up to ``timeout``): an idle producer hears of
        no failure by itself. Sets or clears :attr:`broker_down_since`."""
        try:
            self._producer.list_topics(timeout=timeout)
        except KafkaException:
            if self.broker_down_since is None:
                self.broker_down_since = time.monotonic()
            return False
        self.broker_down_since = None
        return True

    def produce(self, topic: str, value: bytes, key: bytes | None = None, partition: int | None = None,
                headers: Mapping[str, bytes] | None = None) -> None:
        kwargs = {"partition": partition} if partition is not None else {}
        seq = self.last_seq + 1
        while True:
            try:
                self._producer.produce(topic, value=value, key=key, headers=dict(headers) if headers else None,
                                       on_delivery=lambda err, msg: self._acked(seq, err), **kwargs)
                break
            except BufferError:  # local queue full: let deliveries drain
                self._producer.poll(0.05)
        self.last_seq = seq
        self._unacked[seq] = None
        self.sent += 1
        if self.sent & 0x3FF == 0:
            self._producer.poll(0)

    def poll(self) -> None:
        self._producer.poll(0)

    def flush(self, timeout: float = 30.0) -> None:
        """Wait until every produced message is acknowledged; raise BrokerError otherwise."""
        left = self._producer.flush(timeout)
        if left:
            raise BrokerError(f"{left} output message(s) not delivered within {timeout:.0f}s")
        self._raise_failures()

    def _raise_failures(self) -> None:
        if self.failed:
            failed, self.failed = self.failed, 0
            raise BrokerError(f"{failed} output message(s) failed: {self._last_error}")

    def delivered(self, upto: int) -> bool:
        """Has every message up to sequence number ``upto`` been acknowledged?"""
        self._producer.poll(0)
        self._raise_failures()
        return not self._unacked or next(iter(self._unacked)) > upto

    async def wait_delivered(self, upto: int, timeout: float = 30.0) -> None:
        """Like :meth:`flush` for the messages up to ``upto``, without blocking the event loop."""
        deadline = time.monotonic() + timeout
        while not self.delivered(upto):
            if time.monotonic() > deadline:
                raise BrokerError(f"output messages up to #{upto} not delivered within {timeout:.0f}s")
            await asyncio.sleep(0.001)

    def close(self, timeout: float = 10.0) -> None:
        self._producer.flush(timeout)
