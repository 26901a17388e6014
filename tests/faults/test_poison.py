"""Poison input at load: a 900 KB event and 1% bad records are dead-lettered with their reasons,
no worker exits, every good event is processed (issue on faults: one user's two ~600 KB events
grew a profile past the broker's limit and took every worker down, in a loop)."""

from __future__ import annotations

from collections import Counter

import pytest

from stream.adapters.kafka import producer
from stream.loadgen import produce_workload
from stream.partitioning import partition_for
from stream.serde import SchemaRegistry
from stream.stack import wait_until
from stream.topology import Topology
from stream.workload import Workload
from tests.integration.pipeline import comparable, fresh_stack, read_all, reference_profiles, wait_for_profiles
from tests.integration.workers import WorkerProcess

pytestmark = pytest.mark.integration
REG = SchemaRegistry.default()
CLICKS = Topology.load().topic("clicks.v1")


def test_huge_and_malformed_events_at_load_are_dead_lettered_and_stop_nothing(tmp_path):
    with fresh_stack(tmp_path) as env:
        bootstrap = env["STREAM_KAFKA_BOOTSTRAP_SERVERS"]
        w = WorkerProcess(env, tmp_path, "w")
        try:
            w.wait_ready()
            wl = Workload(seed=404, users=300, user_prefix="z")
            p = producer(bootstrap, **{"message.max.bytes": 2_000_000})
            first = produce_workload(p, CLICKS, wl, events=10_000, batch_size=50, malformed_share=0.01,
                                     target_rate=3_000, keep=True)
            huge = {**wl.event(), "event_type": "click", "item_id": "i" * 900_000}
            for _ in range(2):  # the same user twice: the profile would have held both
                p.produce(CLICKS.name, REG.encode_click({**huge, "event_id": f"huge-{_}"}),
                          key=huge["user_id"].encode(), partition=partition_for(huge["user_id"], CLICKS.partitions))
            second = produce_workload(p, CLICKS, wl, events=10_000, batch_size=50, malformed_share=0.01,
                                      target_rate=3_000, keep=True)
            p.flush(30)
            valid = first.produced + second.produced
            reference = reference_profiles(valid)
            got = wait_for_profiles(env["STREAM_REDIS_URL"], reference, timeout=90)
            wrong = [u for u in reference if u not in got or comparable(got[u]) != comparable(reference[u])]
            assert not wrong, (len(wrong), w.log_tail())
            expected = first.expected_rejects + second.expected_rejects + Counter(field_too_long=2)

            def dead_letters() -> Counter:
                return Counter(REG.decode("DeadLetter", m.value)["reason"]
                               for m in read_all(bootstrap, "clicks.dlq.v1", idle=1.0))
            assert wait_until(lambda: dead_letters() == expected, 30, 1.0), (dead_letters(), expected)
            assert w.proc.poll() is None and "event=worker_fatal" not in w.log_path.read_text(), w.log_tail()
        finally:
            w.stop()
