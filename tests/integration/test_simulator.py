"""The closed-loop simulator against the real broker: batch envelopes lose nothing and stay on
the partition of their users."""

import time

from stream.adapters.kafka import read
from stream.partitioning import partition_for
from stream.serde import SchemaRegistry
from stream.simulator import ClosedLoop
from stream.workload import Workload


def test_envelope_mode_sends_every_event_once_in_few_messages_on_the_users_partitions(stack, topics, unique):
    serde = SchemaRegistry.default()
    wl = Workload(seed=3, users=50, user_prefix=f"sim-{unique}-")
    report = ClosedLoop(stack.bootstrap, wl, rate=400, seed=2, batch_ms=50).run(3.0)
    assert report.events >= 1000  # ~400/s for 3 s

    messages = events = 0
    seen: set[str] = set()
    for m in read(stack.bootstrap, "clicks.v1", idle_timeout=2.0, deadline=time.monotonic() + 60):
        kind, rec = serde.decode_clicks(m.value)
        batch = rec["events"] if kind == "ClickBatch" else [rec]
        mine = [e for e in batch if e["user_id"].startswith(wl.user_prefix)]
        if not mine:
            continue
        assert kind == "ClickBatch" and len(mine) == len(batch), "simulator events came as single messages"
        assert {partition_for(e["user_id"], 4) for e in batch} == {m.partition}
        messages += 1
        events += len(batch)
        seen.update(e["event_id"] for e in batch)
    assert events == report.events == len(seen)  # every event once
    # at most one envelope per partition per 50 ms (plus the last ones): 4 x 3 s / 50 ms = 240
    assert messages <= 4 * 3.0 / 0.05 + 4
