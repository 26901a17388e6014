"""The paced load player on the real broker: every message arrives, none is sent early."""

import time
from dataclasses import replace

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from stream.adapters.kafka import producer, read
from stream.loadgen import build_schedule, play_schedule
from stream.topology import Topology
from stream.workload import Workload

pytestmark = pytest.mark.integration


def test_a_schedule_is_played_on_time_and_whole(stack, unique):
    name = f"paced-{unique}"
    admin = AdminClient({"bootstrap.servers": stack.bootstrap})
    admin.create_topics([NewTopic(name, 2)])[name].result(10)
    topic = replace(Topology.load().topic("clicks.v1"), name=name, partitions=2)
    sched = build_schedule(Workload(seed=4, users=50, rate=2000, start_ms=0), topic, events=1000,
                           batch_size=20, linger_ms=5)
    stats = play_schedule(producer(stack.bootstrap), name, sched)
    assert (stats.events, stats.messages) == (1000, len(sched))
    assert stats.seconds >= (sched[-1].at_ms - sched[0].at_ms) / 1000 - 0.05  # paced, not a burst
    got = list(read(stack.bootstrap, name, idle_timeout=2, deadline=time.monotonic() + 30))
    assert sorted(m.value for m in got) == sorted(m.value for m in sched)
    planned = {m.value: m.at_ms for m in sched}
    early = [planned[m.value] - m.timestamp_ms for m in got if m.timestamp_ms < planned[m.value] - 1]
    assert not early, f"{len(early)} message(s) sent before their time (by up to {max(early):.1f} ms)"
