"""Compiled Avro readers against fastavro, the reference: same values for valid bytes, and
never a value where fastavro would not give the same one."""

from __future__ import annotations

import io
import random
import struct

import pytest
from fastavro import parse_schema, schemaless_writer

from stream.avro_fast import compile_reader
from stream.errors import SerdeError
from stream.serde import SchemaRegistry
from stream.workload import Workload

REG = SchemaRegistry.default()
INT64 = (-(2 ** 63), 2 ** 63 - 1)


def random_value(schema, named, rng: random.Random, depth: int = 0):
    """A random valid value of a parsed schema, edge values included."""
    if isinstance(schema, list):
        branch = rng.choice(schema if depth < 4 else [s for s in schema if s == "null"] or schema)
        return random_value(branch, named, rng, depth + 1)
    if isinstance(schema, str) and schema in named:
        return random_value(named[schema], named, rng, depth)
    kind = schema if isinstance(schema, str) else schema["type"]
    if kind == "null":
        return None
    if kind == "boolean":
        return rng.random() < 0.5
    if kind == "int":
        return rng.choice([0, -1, 1, 63, 64, -65, 2 ** 31 - 1, -(2 ** 31), rng.randint(-10 ** 6, 10 ** 6)])
    if kind == "long":
        return rng.choice([0, -1, 64, *INT64, rng.randint(*INT64), rng.randint(-300, 300)])
    if kind == "float":
        return struct.unpack("<f", struct.pack("<f", rng.uniform(-1e6, 1e6)))[0]
    if kind == "double":
        return rng.choice([0.0, -0.0, 1e308, -2.5, rng.uniform(-1e9, 1e9)])
    if kind == "string":
        return "".join(rng.choice("ab zé€😀\x00") for _ in range(rng.choice([0, 1, 5, 70, 200])))
    if kind == "bytes":
        return bytes(rng.getrandbits(8) for _ in range(rng.choice([0, 3, 130])))
    if kind == "enum":
        return rng.choice(schema["symbols"])
    if kind == "array":
        return [random_value(schema["items"], named, rng, depth + 1) for _ in range(rng.choice([0, 1, 3]))]
    if kind == "map":
        return {f"k{rng.randint(0, 9)}": random_value(schema["values"], named, rng, depth + 1)
                for _ in range(rng.choice([0, 1, 3]))}
    if kind == "record":
        return {f["name"]: random_value(f["type"], named, rng, depth + 1) for f in schema["fields"]}
    raise AssertionError(f"no generator for {kind}")


def canon(v):
    """Floats by their bits (NaN equals NaN, -0.0 is not 0.0); everything else as it is."""
    if isinstance(v, float):
        return ("float", struct.pack("<d", v))
    if isinstance(v, dict):
        return {k: canon(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return type(v)(canon(x) for x in v)
    return v


def encode(schema, value) -> bytes:
    buf = io.BytesIO()
    schemaless_writer(buf, schema, value)
    return buf.getvalue()


def reference(name: str, data: bytes):
    try:
        return True, REG._decode_reference(name, data)
    except SerdeError:
        return False, None


def fast(name: str, data: bytes):
    try:
        value, end = REG.fast_readers[name](data, 0)
    except Exception:
        return False, None
    return end == len(data), value


def valid_samples(name: str, n: int, seed: int) -> list[bytes]:
    rng = random.Random(f"{name}:{seed}")
    schema = REG.parsed[name]
    if isinstance(schema, list):  # a top-level union: the registry encodes (branch, record)
        out = []
        for _ in range(n):
            branch = rng.choice(REG.branches[name])
            out.append(REG.encode(name, (branch, random_value(REG.parsed[branch], REG._named, rng))))
        return out
    return [encode(schema, random_value(schema, REG._named, rng)) for _ in range(n)]


def test_every_project_schema_is_compiled_the_hot_ones_included() -> None:
    assert set(REG.fast_readers) == set(REG.parsed)
    assert {"ClickMessage", "ClickBatch", "ClickEvent", "UserState", "UserProfile"} <= set(REG.fast_readers)


@pytest.mark.parametrize("name", sorted(REG.parsed))
def test_random_valid_records_decode_as_fastavro_decodes_them(name: str) -> None:
    for data in valid_samples(name, 150, seed=1):
        ok, value = fast(name, data)
        assert ok, f"compiled reader refused valid {name} bytes {data[:40]!r}"
        assert canon(value) == canon(reference(name, data)[1])
        assert canon(REG.decode(name, data)) == canon(value)


@pytest.mark.parametrize("name", ["ClickMessage", "UserState", "UserProfile", "StageMetrics", "DeadLetter"])
def test_mutated_bytes_never_decode_to_anything_fastavro_would_not(name: str) -> None:
    rng = random.Random(f"mutate:{name}")
    accepted = refused = 0
    for data in valid_samples(name, 40, seed=2):
        for _ in range(60):
            b = bytearray(data)
            op = rng.randrange(4)
            pos = rng.randrange(len(b)) if b else 0
            if op == 0 and b:
                b[pos] = rng.getrandbits(8)
            elif op == 1:
                del b[pos:]
            elif op == 2:
                b.insert(pos, rng.getrandbits(8))
            elif b:
                del b[pos]
            mutated = bytes(b)
            ok, value = fast(name, mutated)
            ref_ok, ref_value = reference(name, mutated)
            if ok:
                accepted += 1
                assert ref_ok and canon(value) == canon(ref_value), f"{name}: compiled reader accepted {mutated!r}"
            else:
                refused += 1
            # whatever the fast path did, decode() answers as the reference does
            if ref_ok:
                assert canon(REG.decode(name, mutated)) == canon(ref_value)
            else:
                with pytest.raises(SerdeError):
                    REG.decode(name, mutated)
    assert accepted > 50 and refused > 50  # both outcomes were exercised


def test_longs_at_the_int64_edges_and_past_them() -> None:
    schema = parse_schema({"type": "record", "name": "L", "fields": [{"name": "x", "type": "long"}]})
    reader = compile_reader(schema, {})
    for x in INT64:
        data = encode(schema, {"x": x})
        assert len(data) == 10 and reader(data, 0) == ({"x": x}, 10)
    with pytest.raises(OverflowError):  # an 11-byte varint is no long: the reference decides
        reader(b"\xff" * 10 + b"\x01", 0)
    with pytest.raises(OverflowError):  # 10 bytes, but bits beyond 64
        reader(b"\xff" * 9 + b"\x02", 0)


def test_a_boolean_byte_other_than_0_or_1_is_left_to_the_reference() -> None:
    schema = parse_schema({"type": "record", "name": "B", "fields": [{"name": "x", "type": "boolean"}]})
    reader = compile_reader(schema, {})
    assert reader(b"\x01", 0) == ({"x": True}, 1) and reader(b"\x00", 0) == ({"x": False}, 1)
    with pytest.raises(ValueError):
        reader(b"\x02", 0)


def test_unsupported_types_are_not_compiled_and_recursive_ones_are() -> None:
    fixed = parse_schema({"type": "record", "name": "F", "fields": [
        {"name": "x", "type": {"type": "fixed", "name": "Four", "size": 4}}]})
    assert compile_reader(fixed, {}) is None
    logical = parse_schema({"type": "record", "name": "T", "fields": [
        {"name": "t", "type": {"type": "long", "logicalType": "timestamp-millis"}}]})
    assert compile_reader(logical, {}) is None
    named: dict = {}
    node = parse_schema({"type": "record", "name": "Node", "fields": [
        {"name": "v", "type": "int"}, {"name": "next", "type": ["null", "Node"]}]}, named_schemas=named)
    value = {"v": 1, "next": {"v": 2, "next": {"v": 3, "next": None}}}
    data = encode(node, value)
    assert compile_reader(node, named)(data, 0) == (value, len(data))


def test_bytes_that_are_not_bytes_still_decode_through_the_reference() -> None:
    event = next(Workload(seed=5).events(1))
    data = REG.encode_click(event)
    assert REG.decode_clicks(memoryview(data)) == REG.decode_clicks(bytearray(data)) == ("ClickEvent", event)
