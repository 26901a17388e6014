"""Dead letters to ``clicks.dlq.v1``: the raw bytes, the reason, and where they came from."""

from __future__ import annotations

import logging
import time

from stream.adapters.output import Output
from stream.core.ingest import pseudonymise
from stream.log import event
from stream.runner import RawMessage
from stream.serde import SchemaRegistry

log = logging.getLogger("stream.dlq")
#: raw bytes kept in a dead letter at most (the rest is cut, and the message says so): a dead
#: letter must fit in one broker message (1 MB by default) however large the rejected input
MAX_RAW_BYTES = 256 * 1024


class KafkaDeadLetters:
    def __init__(self, out: Output, registry: SchemaRegistry, topic: str = "clicks.dlq.v1", *,
                 pseudonymise_key: str = "") -> None:
        self.out, self.registry, self.topic = out, registry, topic
        self.pseudonymise_key = pseudonymise_key
        self.sent = 0

    def key(self, key: bytes | None) -> bytes | None:
        """The dead letter's key: the source key (a user id), pseudonymised when ingest pseudonymises."""
        if not key or not self.pseudonymise_key:
            return key
        return pseudonymise(key.decode("utf-8", "replace"), self.pseudonymise_key).encode()

    def send(self, stage: str, exc: BaseException, reason: str, msg: RawMessage, raw: bytes,
             batch_index: int | None) -> None:
        message = str(exc)[:2000]
        if len(raw) > MAX_RAW_BYTES:
            message += f" [raw cut to its first {MAX_RAW_BYTES} of {len(raw)} bytes]"
            raw = raw[:MAX_RAW_BYTES]
        record = {"stage": stage, "error_class": type(exc).__name__, "reason": reason, "message": message,
                  "source_topic": msg.topic, "source_partition": msg.partition, "source_offset": msg.offset,
                  "batch_index": batch_index, "key": self.key(msg.key), "raw": raw, "failed_at": int(time.time() * 1000)}
        self.out.produce(self.topic, self.registry.encode("DeadLetter", record), key=record["key"])
        self.sent += 1
        if self.sent <= 20 or self.sent % 1000 == 0:  # greppable, but never a flood
            event(log, "dead_letter", logging.WARNING, stage=stage, reason=reason, topic=msg.topic,
                  partition=msg.partition, offset=msg.offset, index=batch_index, total=self.sent)
