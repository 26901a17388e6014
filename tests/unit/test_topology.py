from pathlib import Path

import pytest
import yaml

from stream.errors import TopologyError
from stream.serde import SchemaRegistry
from stream.topology import Topology, parse

DECLARED = Path(__file__).resolve().parents[2] / "topologies" / "clickstream.yaml"


def load_with(mutate) -> Topology:
    data = yaml.safe_load(DECLARED.read_text())
    mutate(data)
    text = yaml.safe_dump(data, sort_keys=False)
    return parse(text, Path("t.yaml"), SchemaRegistry.default())


def test_declared_topology_is_valid_and_complete():
    t = Topology.load()
    design = {"clicks.v1", "clicks.dlq.v1", "profiles.v1", "recommendations.v1", "recommendations.shadow.v1",
              "feedback.v1", "models.v1", "drift.input.v1", "drift.profiles.v1", "drift.predictions.v1",
              "drift.concept.v1", "alerts.v1", "control.v1"}
    assert design <= set(t.topics)
    assert set(t.stages) == {"ingest", "profile", "score", "feedback", "learn", "drift", "rollout"}
    for stage in t.stages.values():
        assert stage.monitor == f"monitor.{stage.name}.v1"
    assert t.topic("profiles.v1").cleanup == "compact"
    assert t.topic("models.v1").cleanup == "compact"
    assert t.topic("feedback.v1").partitions == 1
    assert t.stage("profile").tables[0].source == "clicks.v1"


@pytest.mark.parametrize("mutate,needle", [
    (lambda d: d["topics"]["clicks.v1"].update(value="NoSuchSchema"), "topic 'clicks.v1': value schema 'NoSuchSchema'"),
    (lambda d: d["topics"]["clicks.v1"].update(partitions=0), "topic 'clicks.v1': partitions"),
    (lambda d: d["topics"]["clicks.v1"].update(cleanup="shred"), "topic 'clicks.v1': cleanup"),
    (lambda d: d["topics"]["clicks.v1"].update(retention_ms=0), "topic 'clicks.v1': retention_ms"),
    (lambda d: d["topics"]["clicks.v1"].pop("key"), "topic 'clicks.v1': missing field 'key'"),
    (lambda d: d["topics"]["clicks.v1"].update(colour="red"), "topic 'clicks.v1': unknown field"),
    (lambda d: d["topics"].update({"Clicks": d["topics"]["clicks.v1"]}), "topic 'Clicks': name must"),
    (lambda d: d["topics"].pop("monitor.score.v1"), "stage 'score': monitoring topic 'monitor.score.v1'"),
    (lambda d: d["stages"]["score"].pop("monitor"), "stage 'score': missing its monitoring topic"),
    (lambda d: d["stages"]["score"].update(monitor="alerts.v1"), "stage 'score': monitoring topic 'alerts.v1' must carry"),
    (lambda d: d["stages"]["learn"].update(inputs=["nope.v1"]), "stage 'learn': topic 'nope.v1' is not declared"),
    (lambda d: d["stages"]["learn"].update(inputs=[]), "stage 'learn': inputs"),
    (lambda d: d["stages"]["profile"]["tables"]["profiles"].update(partitions=8), "not co-partitioned"),
    (lambda d: d["stages"]["profile"]["tables"]["profiles"].update(key="session_id"), "not co-partitioned"),
    (lambda d: d["stages"]["profile"]["tables"]["profiles"].update(source="feedback.v1"), "is not an input"),
])
def test_invalid_topology_names_the_topic_or_stage(mutate, needle):
    with pytest.raises(TopologyError, match=needle.replace("(", r"\(")):
        load_with(mutate)


def test_error_gives_the_line_of_the_offender():
    text = DECLARED.read_text().replace("value: ClickMessage", "value: Nope", 1)
    line = next(i for i, ln in enumerate(text.splitlines(), 1) if ln.strip() == "clicks.v1:")
    with pytest.raises(TopologyError, match=rf"^t.yaml:{line}: topic 'clicks.v1'"):
        parse(text, Path("t.yaml"), SchemaRegistry.default())


def test_not_yaml_or_wrong_shape():
    with pytest.raises(TopologyError, match="not valid YAML"):
        parse("topics: [", Path("t.yaml"), SchemaRegistry.default())
    with pytest.raises(TopologyError, match="must have 'topics' and 'stages'"):
        parse("topics: {}\n", Path("t.yaml"), SchemaRegistry.default())
    with pytest.raises(TopologyError, match="cannot read topology"):
        Topology.load("/nonexistent/t.yaml")


def test_kafka_config_from_declaration():
    t = Topology.load().topic("profiles.v1")
    assert t.kafka_config() == {"cleanup.policy": "compact", "retention.ms": "-1"}
