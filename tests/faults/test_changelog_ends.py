"""A changelog that ends in a multi-record batch: the true end is read, recovery is whole, and a
worker keeping its partitions across rebalances does not crash (it did: CI, issue on faults)."""

from __future__ import annotations

import time
from array import array

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from stream.adapters.kafka import log_ends, producer
from stream.core.profile import Position, ProfileConfig, fold
from stream.partitioning import partition_for
from stream.serde import SchemaRegistry
from stream.users import UserState, UserStates
from stream.workload import Workload
from tests.integration.pipeline import fresh_stack, redis_profiles
from tests.integration.workers import WorkerProcess

pytestmark = pytest.mark.integration
REG = SchemaRegistry.default()
CHANGELOG = "stream-profiles-changelog"
PARTITIONS = 4


def reported_end(bootstrap: str, topic: str, partition: int) -> int:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "t"})
    try:
        return c.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)[1]
    finally:
        c.close()


def create_topic(bootstrap: str, name: str, partitions: int) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})  # kept alive until the result is in
    admin.create_topics([NewTopic(name, partitions, 1)])[name].result(15)


def test_log_ends_reads_past_a_short_reported_end(stack, unique):
    topic = f"ends-{unique}"
    create_topic(stack.bootstrap, topic, 2)
    p = producer(stack.bootstrap, **{"linger.ms": 50})
    for _ in range(8):
        p.produce(topic, b"x", partition=0)  # one batch of 8
    p.flush(10)
    reported = {(topic, 0): reported_end(stack.bootstrap, topic, 0), (topic, 1): reported_end(stack.bootstrap, topic, 1)}
    assert reported[(topic, 1)] == 0 and 1 <= reported[(topic, 0)] <= 8  # Tansu: 1 (the batch's start + 1)
    assert log_ends(stack.bootstrap, reported) == {(topic, 0): 8, (topic, 1): 0}


def prewritten_profiles(per_partition: int) -> dict[str, tuple[int, dict]]:
    """``per_partition`` users of each partition with a one-event profile, keyed by user id."""
    wl, cfg, out, i = Workload(seed=7, users=50), ProfileConfig(), {}, 0
    while len(out) < per_partition * PARTITIONS:
        user, i = f"c{i}", i + 1
        p = partition_for(user, PARTITIONS)
        if sum(1 for q, _ in out.values() if q == p) < per_partition:
            ev = {**wl.event(), "user_id": user}
            out[user] = (p, fold(None, ev, Position(p, 0, 0), cfg))
    return out


def recovered(w: WorkerProcess) -> bool:
    """Faust's recovery has finished since the worker's last assignment."""
    return "event=recovered" in w.log_path.read_text().split("event=partitions_assigned")[-1]


def test_a_worker_keeping_partitions_across_rebalances_survives_a_changelog_ending_mid_batch(tmp_path):
    with fresh_stack(tmp_path) as env:
        bootstrap = env["STREAM_KAFKA_BOOTSTRAP_SERVERS"]
        create_topic(bootstrap, CHANGELOG, PARTITIONS)
        profiles = prewritten_profiles(per_partition=10)
        states = UserStates(None, REG)  # only its encoder
        p = producer(bootstrap, **{"linger.ms": 200})
        for user, (partition, profile) in profiles.items():  # a state write cut short: no later batch
            _, state = states.encode(UserState(profile, array("q"), array("q"), partition))
            p.produce(CHANGELOG, state, key=user.encode(), partition=partition)
        p.flush(10)
        assert all(reported_end(bootstrap, CHANGELOG, q) < 10 for q in range(PARTITIONS))  # the broker's short answer

        a = WorkerProcess(env, tmp_path, "a")
        workers = [a]
        try:
            a.wait_ready()
            expected = {u: prof for u, (_, prof) in profiles.items()}

            def all_in_redis() -> bool:
                got = redis_profiles(env["STREAM_REDIS_URL"], sorted(expected))
                return got.keys() == expected.keys() and all(got[u]["version"] == expected[u]["version"]
                                                             for u in expected)
            deadline = time.monotonic() + 60
            while not all_in_redis() and time.monotonic() < deadline:
                time.sleep(0.2)
            assert all_in_redis(), "the recovery restored every record of the last batch (the resync wrote them)"
            for n, wid in enumerate(("b", "c")):  # two rebalances; a keeps some partitions in each
                w = WorkerProcess(env, tmp_path, wid)
                workers.append(w)
                w.wait_ready()
                deadline = time.monotonic() + 60
                while a.log_path.read_text().count("event=partitions_assigned") < n + 2 and time.monotonic() < deadline:
                    assert a.proc.poll() is None, a.log_tail()
                    time.sleep(0.2)
                assert a.log_path.read_text().count("event=partitions_assigned") >= n + 2, a.log_tail()
            for w in workers:  # the recovery after each one's last assignment: checked, then done
                deadline = time.monotonic() + 60
                while not recovered(w) and w.proc.poll() is None and time.monotonic() < deadline:
                    time.sleep(0.2)
                log = w.log_path.read_text()
                assert w.proc.poll() is None and "ConsistencyError" not in log and recovered(w), w.log_tail()
            assert "event=changelog_ends_read kind=active" in a.log_path.read_text()
            assert all_in_redis()
        finally:
            for w in workers:
                w.stop()
