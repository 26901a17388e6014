"""Topics from the topology on the real broker; `stream tail` decodes what was produced."""

import json
from pathlib import Path

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

from stream.adapters.kafka import existing_topics, read
from stream.config import PathSettings
from stream.errors import SerdeError
from stream.partitioning import partition_for
from stream.serde import SchemaRegistry
from stream.workload import Workload
from tests.conftest import run_cli, stack_env

pytestmark = pytest.mark.integration
REG = SchemaRegistry.default()


def test_topics_created_match_the_topology(stack, topics):
    proc = run_cli("topics", "create", env=stack_env(stack), check=True)  # idempotent
    assert f"0 topic(s) created, {len(topics.topics)} already existed" in proc.stdout
    have = existing_topics(stack.bootstrap)
    for t in topics.topics.values():
        assert have[t.name] == t.partitions, t.name
    admin = AdminClient({"bootstrap.servers": stack.bootstrap})
    for name in ("profiles.v1", "clicks.v1"):
        res = ConfigResource("topic", name)
        conf = admin.describe_configs([res])[res].result(timeout=10)
        assert conf["cleanup.policy"].value == topics.topic(name).cleanup
        assert conf["retention.ms"].value == str(topics.topic(name).retention_ms)

    listed = [json.loads(line) for line in
              run_cli("topics", "list", "--json", env=stack_env(stack), check=True).stdout.splitlines()]
    by_name = {r["topic"]: r for r in listed}
    assert all(by_name[t]["state"] == "ok" and by_name[t]["partitions"] == topics.topic(t).partitions
               for t in topics.topics)


def test_tail_decodes_an_event_and_a_batch_and_reports_garbage(stack, topics):
    events = list(Workload(seed=11, users=5).events(4))
    p = Producer({"bootstrap.servers": stack.bootstrap})
    # clicks.v1 is shared with other tests: find our records among the others by their ids.
    user = events[0]["user_id"]
    part = partition_for(user, 4)
    p.produce("clicks.v1", key=user.encode(), value=REG.encode_click(events[0]), partition=part)
    batch = {"batch_id": "b-tail", "producer": "test", "created": 1, "events": events[1:]}
    p.produce("clicks.v1", key=user.encode(), value=REG.encode_batch(batch), partition=part)
    p.produce("clicks.v1", key=b"junk", value=b"\x07garbage\xff", partition=part)
    assert p.flush(10) == 0

    proc = run_cli("tail", "clicks.v1", "--from-beginning", "--idle-timeout", "2", env=stack_env(stack),
                   check=True)
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    single = [r for r in lines if r.get("type") == "ClickEvent" and r["value"]["event_id"] == events[0]["event_id"]]
    batches = [r for r in lines if r.get("type") == "ClickBatch" and r["value"]["batch_id"] == "b-tail"]
    garbage = [r for r in lines if r.get("key") == "junk"]
    assert single and single[0]["value"] == events[0] and single[0]["partition"] == part
    assert batches and batches[0]["value"]["events"] == events[1:]
    assert garbage and garbage[0]["error"].startswith("cannot decode ClickMessage")
    assert "raw" in garbage[0]
    assert "undecodable" in proc.stderr and "Traceback" not in proc.stderr


def test_tail_of_an_undeclared_topic_is_a_clear_error(stack, topics):
    proc = run_cli("tail", "nope.v1", "--max", "1", env=stack_env(stack))
    assert proc.returncode == 1
    assert proc.stderr.strip() == "stream: error: topic 'nope.v1' is not declared in clickstream.yaml"


def test_tail_max_stops_and_json_is_one_line_per_record(stack, topics):
    proc = run_cli("tail", "clicks.v1", "--from-beginning", "--max", "2", "--idle-timeout", "5",
                   env=stack_env(stack), check=True)
    assert len(proc.stdout.splitlines()) == 2


def test_confluent_murmur2_partitioner_agrees_with_ours(stack, topics):
    """Upstream producers key by user id: our partition_for must match Kafka's default."""
    p = Producer({"bootstrap.servers": stack.bootstrap, "partitioner": "murmur2_random"})
    users = [f"pt-{i}" for i in range(40)]
    delivered = {}
    for u in users:
        p.produce("recommendations.v1", key=u.encode(), value=b"x",
                  on_delivery=lambda err, msg, u=u: delivered.__setitem__(u, msg.partition()))
    assert p.flush(10) == 0
    assert delivered == {u: partition_for(u, 4) for u in users}


def test_produce_command_round_trip(stack, topics):
    proc = run_cli("produce", "--events", "300", "--batch-size", "25", "--seed", "4", env=stack_env(stack),
                   check=True)
    assert proc.stdout.startswith("produced 300 events (0 malformed)")
    n_events = 0
    for msg in read(stack.bootstrap, "clicks.v1", idle_timeout=2.0):
        try:
            kind, value = REG.decode_clicks(msg.value)
        except SerdeError:  # other tests put garbage on clicks.v1 on purpose
            continue
        if kind == "ClickBatch" and value["producer"] == "stream-loadgen":
            n_events += len(value["events"])
            assert {partition_for(e["user_id"], 4) for e in value["events"]} == {msg.partition}
    assert n_events >= 300


def test_a_topic_with_other_partitions_than_declared_fails_create_and_list(stack, topics, tmp_path, unique):
    name = f"mismatch-{unique}.v1"
    declared = (f"topics:\n  {name}:\n    key: user_id\n    value: UserProfile\n    partitions: 2\n"
                f"    cleanup: delete\n    retention_ms: 60000\n    doc: test\n")
    topology = tmp_path / "topology.yaml"
    topology.write_text(Path(PathSettings().topology).read_text().replace("topics:\n", declared, 1))
    admin = AdminClient({"bootstrap.servers": stack.bootstrap})
    admin.create_topics([NewTopic(name, 1, 1)])[name].result(15)  # what a client's auto-create would make
    env = {**stack_env(stack), "STREAM_PATHS_TOPOLOGY": str(topology)}
    proc = run_cli("topics", "create", env=env)
    assert proc.returncode == 1 and "exists with 1 partitions, topology says 2" in proc.stdout
    assert proc.stderr.strip().startswith("stream topics create: error: 1 topic(s) exist with other partition")
    proc = run_cli("topics", "list", env=env)
    assert proc.returncode == 1 and "partitions_mismatch" in proc.stdout and name in proc.stderr
