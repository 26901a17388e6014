"""ingest handler: validate, dedupe, pseudonymise, put the event on its user's partition."""

from __future__ import annotations

import time
from typing import Callable

from stream.adapters.output import Output
from stream.core import ingest
from stream.core.profile import Position, is_replay
from stream.monitor import StageStats
from stream.partitioning import partition_for
from stream.runner import RawMessage
from stream.serde import SchemaRegistry
from stream.users import UserStates

#: set on events ingest re-produced to their user's partition: already validated and pseudonymised
#: (with a pseudonymisation key the value is :func:`stream.core.ingest.forward_tag`: only ingest can make it)
INGESTED_HEADER = "x-stream-ingested"
OPTIONAL_FIELDS = ("session_id", "item_id", "category", "price", "dwell_ms", "device", "country")
MISSING_KEYS = tuple((f, "missing." + f) for f in OPTIONAL_FIELDS)


class IngestStage:
    def __init__(self, cfg: ingest.IngestConfig, users: UserStates, out: Output, registry: SchemaRegistry,
                 topic: str, partitions: int, clock: Callable[[], float] = time.time) -> None:
        self.cfg, self.users, self.out, self.registry = cfg, users, out, registry
        self.topic, self.partitions, self.clock = topic, partitions, clock
        self.stats = StageStats("ingest")
        self.mix_keys = {t: "mix." + t for t in cfg.event_types}

    def handle(self, ev: dict, pos: Position, msg: RawMessage) -> dict | None:
        stats = self.stats
        inputs = stats.inputs  # input metrics: missing values and the event mix
        for f, key in MISSING_KEYS:
            if ev.get(f) is None:
                inputs[key] = inputs.get(key, 0.0) + 1.0
        key = self.mix_keys.get(ev.get("event_type"), "unknown.event_type")
        inputs[key] = inputs.get(key, 0.0) + 1.0
        ingest.validate(ev, int(self.clock() * 1000), self.cfg)
        secret = self.cfg.pseudonymise_key
        if secret and msg.headers.get(INGESTED_HEADER) != ingest.forward_tag(ev["user_id"], ev["event_id"], secret):
            ev["user_id"] = ingest.pseudonymise(ev["user_id"], secret)
        user = ev["user_id"]
        owner = partition_for(user, self.partitions)
        if owner != pos.partition:  # mis-keyed (or pseudonymised): correct it, do not lose it
            tag = ingest.forward_tag(user, ev["event_id"], secret) if secret else b"1"
            self.out.produce(self.topic, self.registry.encode_click(ev), key=user.encode(), partition=owner,
                             headers={INGESTED_HEADER: tag})
            stats.count("forwarded")
            return None
        st = self.users.get(user, pos.partition)
        if is_replay(st.profile, pos):
            return ev  # a replay after a restart: the profile stage skips and counts it
        h = ingest.id_hash(ev["event_id"])
        if ingest.is_duplicate(st.seen_ids, st.seen_ts, h, ev["timestamp"], self.cfg):
            stats.count("duplicate")
            return None
        ingest.remember(st.seen_ids, st.seen_ts, h, ev["timestamp"], self.cfg)
        stats.count("out")
        return ev
