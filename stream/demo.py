"""The main job on the embedded stack: bring it up, run the pipeline on a synthetic stream, summarise.

Until the stages exist it is a round trip: produce single events, batch envelopes and
malformed records to ``clicks.v1`` and read them all back decoded.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from dataclasses import dataclass

from stream.adapters.kafka import ensure_topology, producer, read
from stream.config import Settings
from stream.errors import SerdeError, StreamError
from stream.loadgen import produce_workload
from stream.serde import SchemaRegistry
from stream.stack import Stack
from stream.topology import Topology
from stream.workload import Workload


@dataclass
class DemoOptions:
    events: int = 20_000
    batch_size: int = 100
    malformed: float = 0.01
    keep: bool = False


def say(text: str) -> None:
    print(text, flush=True)


def run(settings: Settings, opts: DemoOptions) -> int:
    stack = Stack(settings)
    started_here = not stack.running()
    procs, done = stack.up()
    for line in done:
        say(f"[stack] {line}")
    bootstrap = settings.kafka.bootstrap_servers or procs["broker"].endpoint
    try:
        topology = Topology.load(settings.paths.topology)
        results = ensure_topology(bootstrap, topology)
        say(f"[topics] {sum(r.created for r in results)} created, "
            f"{sum(not r.created for r in results)} already there ({len(results)} declared)")
        clicks = topology.topic("clicks.v1")
        reg = SchemaRegistry(settings.paths.schemas_dir)
        wl = Workload(seed=int(time.time()))
        t0 = time.monotonic()
        prod = producer(bootstrap)
        stats = produce_workload(prod, clicks, wl, events=opts.events, batch_size=opts.batch_size,
                                 malformed_share=opts.malformed, registry=reg,
                                 progress=lambda d, t: print(f"[produce] {d:,}/{t:,}", file=sys.stderr))
        del prod  # destroy the client now, not after the broker is gone
        say(f"[produce] {stats.events:,} events ({stats.malformed} malformed) in {stats.messages:,} messages, "
            f"{stats.events / max(stats.seconds, 1e-9):,.0f} events/s")
        kinds: Counter = Counter()
        n_events = 0
        for msg in read(bootstrap, clicks.name, idle_timeout=3.0, deadline=time.monotonic() + 120):
            try:
                kind, value = reg.decode_clicks(msg.value or b"")
            except SerdeError:
                kinds["undecodable"] += 1
                continue
            kinds[kind] += 1
            n_events += len(value["events"]) if kind == "ClickBatch" else 1
        say(f"[read back] {sum(kinds.values()):,} messages: {dict(kinds)}; {n_events:,} events decoded "
            f"in {time.monotonic() - t0:.1f}s")
        expected = stats.events - stats.expected_rejects.get("undecodable", 0)
        if n_events < expected:
            raise StreamError(f"read back {n_events} decodable events, produced {expected}")
        say(f"[ok] round trip complete: {n_events:,} events decodable, {kinds['undecodable']} undecodable "
            f"(as produced: {stats.expected_rejects.get('undecodable', 0)})")
        return 0
    finally:
        if opts.keep or not started_here:
            say(f"[stack] left running (stop it with `stream down`): broker {bootstrap}")
        else:
            for line in stack.down():
                say(f"[stack] {line}")
