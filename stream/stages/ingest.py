"""ingest handler: validate, dedupe, pseudonymise, put the event on its user's partition."""

from __future__ import annotations

import time
from typing import Callable

from stream.adapters.output import Output
from stream.core import ingest
from stream.core.profile import Position
from stream.monitor import StageStats
from stream.partitioning import partition_for
from stream.runner import RawMessage
from stream.serde import SchemaRegistry
from stream.users import UserStates

#: set on events ingest re-produced to their user's partition: already validated and pseudonymised
INGESTED_HEADER = "x-stream-ingested"
OPTIONAL_FIELDS = ("session_id", "item_id", "category", "price", "dwell_ms", "device", "country")


class IngestStage:
    def __init__(self, cfg: ingest.IngestConfig, users: UserStates, out: Output, registry: SchemaRegistry,
                 topic: str, partitions: int, clock: Callable[[], float] = time.time) -> None:
        self.cfg, self.users, self.out, self.registry = cfg, users, out, registry
        self.topic, self.partitions, self.clock = topic, partitions, clock
        self.stats = StageStats("ingest")
        self.known_types = set(cfg.event_types)

    def handle(self, ev: dict, pos: Position, msg: RawMessage) -> dict | None:
        stats = self.stats
        for f in OPTIONAL_FIELDS:  # input metrics: missing values and the event mix
            if ev.get(f) is None:
                stats.add_input("missing." + f)
        etype = ev.get("event_type")
        if etype not in self.known_types:
            stats.add_input("unknown.event_type")
        else:
            stats.add_input("mix." + etype)
        ingest.validate(ev, int(self.clock() * 1000), self.cfg)
        if self.cfg.pseudonymise_key and INGESTED_HEADER not in msg.headers:
            ev["user_id"] = ingest.pseudonymise(ev["user_id"], self.cfg.pseudonymise_key)
        user = ev["user_id"]
        owner = partition_for(user, self.partitions)
        if owner != pos.partition:  # mis-keyed (or pseudonymised): correct it, do not lose it
            self.out.produce(self.topic, self.registry.encode_click(ev), key=user.encode(), partition=owner,
                             headers={INGESTED_HEADER: b"1"})
            stats.count("forwarded")
            return None
        st = self.users.get(user, pos.partition)
        profile = st.profile
        if profile is not None and profile["source_partition"] == pos.partition and \
                (pos.offset, pos.index) <= (profile["source_offset"], profile["source_index"]):
            return ev  # a replay after a restart: the profile stage skips and counts it
        h = ingest.id_hash(ev["event_id"])
        if ingest.is_duplicate(st.seen_ids, st.seen_ts, h, ev["timestamp"], self.cfg):
            stats.count("duplicate")
            return None
        ingest.remember(st.seen_ids, st.seen_ts, h, ev["timestamp"], self.cfg)
        stats.count("out")
        return ev
