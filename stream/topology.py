"""Topology as data: topics and stages from ``topologies/*.yaml``, validated.

Every error names the offending topic or stage and the line it starts on.

>>> t = Topology.load()
>>> t.topic("clicks.v1").partitions
4
>>> t.stage("profile").monitor
'monitor.profile.v1'
>>> t.topic("nope.v1")
Traceback (most recent call last):
...
stream.errors.TopologyError: topic 'nope.v1' is not declared in clickstream.yaml
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from stream.config import PROJECT_ROOT
from stream.errors import TopologyError
from stream.serde import SchemaRegistry

TOPIC_NAME = re.compile(r"^[a-z][a-z0-9_-]*(\.[a-z0-9_-]+)*\.v[0-9]+$")
CLEANUP = ("delete", "compact")
MONITOR_SCHEMA = "StageMetrics"


@dataclass(frozen=True)
class Topic:
    name: str
    key: str
    value: str
    partitions: int
    cleanup: str = "delete"
    retention_ms: int = -1
    doc: str = ""

    def kafka_config(self) -> dict[str, str]:
        return {"cleanup.policy": self.cleanup, "retention.ms": str(self.retention_ms)}


@dataclass(frozen=True)
class Table:
    name: str
    key: str
    source: str
    partitions: int


@dataclass(frozen=True)
class Stage:
    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    monitor: str
    tables: tuple[Table, ...] = ()
    doc: str = ""


@dataclass(frozen=True)
class Topology:
    path: Path
    topics: dict[str, Topic] = field(default_factory=dict)
    stages: dict[str, Stage] = field(default_factory=dict)

    @classmethod
    def load(cls, path: str | Path | None = None,
             registry: SchemaRegistry | None = None) -> "Topology":
        path = Path(path or PROJECT_ROOT / "topologies" / "clickstream.yaml")
        try:
            text = path.read_text()
        except OSError as exc:
            raise TopologyError(f"cannot read topology {path}: {exc.strerror}") from exc
        return parse(text, path, registry or SchemaRegistry.default())

    def topic(self, name: str) -> Topic:
        try:
            return self.topics[name]
        except KeyError:
            raise TopologyError(f"topic {name!r} is not declared in {self.path.name}") from None

    def stage(self, name: str) -> Stage:
        try:
            return self.stages[name]
        except KeyError:
            raise TopologyError(f"stage {name!r} is not declared in {self.path.name}; "
                                f"stages: {', '.join(self.stages)}") from None


def _key_lines(text: str) -> dict[tuple[str, str], int]:
    """Line number (1-based) of each ``topics.X`` / ``stages.Y`` key."""
    lines: dict[tuple[str, str], int] = {}
    try:
        root = yaml.compose(text)
    except yaml.YAMLError:
        return lines
    if not isinstance(root, yaml.MappingNode):
        return lines
    for knode, vnode in root.value:
        if knode.value in ("topics", "stages") and isinstance(vnode, yaml.MappingNode):
            for k2, _ in vnode.value:
                lines[(knode.value, str(k2.value))] = k2.start_mark.line + 1
    return lines


def parse(text: str, path: Path, registry: SchemaRegistry) -> Topology:
    where = path.name
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise TopologyError(f"{where} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("topics"), dict) \
            or not isinstance(data.get("stages"), dict):
        raise TopologyError(f"{where} must have 'topics' and 'stages' mappings")
    lines = _key_lines(text)

    def fail(kind: str, name: str, problem: str) -> TopologyError:
        line = lines.get((kind + "s", name))
        at = f"{where}:{line}" if line else where
        return TopologyError(f"{at}: {kind} {name!r}: {problem}")

    topics: dict[str, Topic] = {}
    for name, spec in data["topics"].items():
        name = str(name)
        if not isinstance(spec, dict):
            raise fail("topic", name, "must be a mapping")
        if not TOPIC_NAME.match(name):
            raise fail("topic", name, "name must be lower-case dotted words ending in a version (.v1)")
        unknown = set(spec) - {"key", "value", "partitions", "cleanup", "retention_ms", "doc"}
        if unknown:
            raise fail("topic", name, f"unknown field(s) {', '.join(sorted(unknown))}")
        for req in ("key", "value", "partitions"):
            if req not in spec:
                raise fail("topic", name, f"missing field {req!r}")
        if spec["value"] not in registry.parsed:
            raise fail("topic", name, f"value schema {spec['value']!r} not found in {registry.dir}")
        parts = spec["partitions"]
        if not isinstance(parts, int) or isinstance(parts, bool) or parts < 1:
            raise fail("topic", name, f"partitions must be a positive integer, got {parts!r}")
        cleanup = spec.get("cleanup", "delete")
        if cleanup not in CLEANUP:
            raise fail("topic", name, f"cleanup must be one of {', '.join(CLEANUP)}, got {cleanup!r}")
        retention = spec.get("retention_ms", -1)
        if not isinstance(retention, int) or isinstance(retention, bool) or (retention < 1 and retention != -1):
            raise fail("topic", name, f"retention_ms must be a positive integer or -1, got {retention!r}")
        topics[name] = Topic(name, str(spec["key"]), spec["value"], parts, cleanup, retention,
                             str(spec.get("doc", "")))

    stages: dict[str, Stage] = {}
    for name, spec in data["stages"].items():
        name = str(name)
        if not isinstance(spec, dict):
            raise fail("stage", name, "must be a mapping")
        unknown = set(spec) - {"inputs", "outputs", "monitor", "tables", "doc"}
        if unknown:
            raise fail("stage", name, f"unknown field(s) {', '.join(sorted(unknown))}")
        ins, outs = _names(spec.get("inputs")), _names(spec.get("outputs"))
        if ins is None or outs is None or not ins:
            raise fail("stage", name, "inputs (non-empty) and outputs must be lists of topic names")
        for t in ins + outs:
            if t not in topics:
                raise fail("stage", name, f"topic {t!r} is not declared under topics")
        monitor = spec.get("monitor")
        if not monitor:
            raise fail("stage", name, "missing its monitoring topic (monitor: monitor.<stage>.v1)")
        if monitor not in topics:
            raise fail("stage", name, f"monitoring topic {monitor!r} is not declared under topics")
        if topics[monitor].value != MONITOR_SCHEMA:
            raise fail("stage", name, f"monitoring topic {monitor!r} must carry {MONITOR_SCHEMA}")
        tables = []
        for tname, tspec in (spec.get("tables") or {}).items():
            if not isinstance(tspec, dict) or "source" not in tspec or "key" not in tspec:
                raise fail("stage", name, f"table {tname!r} needs 'key' and 'source'")
            source = tspec["source"]
            if source not in topics:
                raise fail("stage", name, f"table {tname!r} source {source!r} is not declared")
            if source not in ins:
                raise fail("stage", name, f"table {tname!r} source {source!r} is not an input of the stage")
            src = topics[source]
            parts = tspec.get("partitions", src.partitions)
            if parts != src.partitions:
                raise fail("stage", name, f"table {tname!r} has {parts} partitions but its source "
                                          f"{source!r} has {src.partitions}: not co-partitioned")
            if tspec["key"] != src.key:
                raise fail("stage", name, f"table {tname!r} is keyed by {tspec['key']!r} but its source "
                                          f"{source!r} by {src.key!r}: not co-partitioned")
            tables.append(Table(str(tname), tspec["key"], source, parts))
        stages[name] = Stage(name, tuple(ins), tuple(outs), monitor, tuple(tables), str(spec.get("doc", "")))
    return Topology(path, topics, stages)


def _names(value: Any) -> list[str] | None:
    if value is None:
        return []
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    return None
