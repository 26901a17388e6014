"""Contract tests: the schemas are the source of truth; code and bytes must follow them."""

import dataclasses
import typing
from array import array

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stream import records
from stream.errors import SerdeError, UnknownSchemaError
from stream.serde import SchemaRegistry, avro_bytes
from stream.workload import Workload

REG = SchemaRegistry.default()
EVENTS = list(Workload(seed=7, users=20).events(30))

REALISTIC = {
    "ClickEvent": EVENTS[0],
    "ClickBatch": {"batch_id": "b1", "producer": "web-eu-1", "created": 1_700_000_000_000, "events": EVENTS},
    "DeadLetter": {"stage": "ingest", "error_class": "ValidationError", "reason": "missing_user_id",
                   "message": "user_id is empty", "source_topic": "clicks.v1", "source_partition": 2,
                   "source_offset": 41, "batch_index": 3, "key": b"u1", "raw": b"\x00\x02ab",
                   "failed_at": 1_700_000_000_123},
    "UserProfile": {"user_id": "u1", "version": 12, "first_seen": 1_700_000_000_000, "last_seen": 1_700_000_100_000,
                    "counts": {"view": 10, "click": 2}, "affinity": {"c01": 3.2, "c07": 0.4},
                    "affinity_at": 1_700_000_100_000, "sessions": 2, "session_start": 1_700_000_090_000,
                    "session_events": 4, "session_total_ms": 60_000, "last_items": ["i3", "i9"], "spend": 12.5,
                    "source_partition": 1, "source_offset": 99, "source_index": 7,
                    "consumed": b"\x01\x00\x00\x00"},
    "UserState": None,  # filled below from the UserProfile example
    "Recommendation": {"rec_id": "r1", "user_id": "u1", "request_event_id": "e1", "created": 1_700_000_000_000,
                       "model_name": "reco", "model_version": 3, "variant": "champion",
                       "items": [{"item_id": "i1", "score": 0.8, "category": "c01", "source": "popular",
                                  "features": {"pop": 0.9, "seen": 0.0}},
                                 {"item_id": "i2", "score": 0.3, "category": None, "source": "related",
                                  "features": {}}],
                       "features": {"ctr_7d": 0.1, "views": 12.0}, "candidates": 200},
    "Feedback": {"rec_id": "r1", "user_id": "u1", "item_id": "i1", "category": "c01", "rank": 0, "label": 1,
                 "score": 0.8, "model_name": "reco", "model_version": 3, "variant": "champion",
                 "features": {"views": 12.0}, "served_at": 1_700_000_000_000, "resolved_at": 1_700_000_030_000},
    "ModelRelease": {"model_name": "reco", "version": 4, "parent_version": 3, "family": "fm",
                     "created": 1_700_000_000_000, "examples_seen": 50_000, "metrics": {"log_loss": 0.41, "auc": 0.71},
                     "blob_key": "stream:model:reco:4", "blob_sha256": "ab" * 32, "blob_hmac": "cd" * 32,
                     "blob": b"\x80\x05model"},
    "DriftReport": {"stage": "input", "quantity": "event_type", "statistic": "psi", "value": 0.31,
                    "threshold": 0.2, "alarm": True, "window_start": 1_700_000_000_000,
                    "window_end": 1_700_000_060_000, "sample_size": 6000, "reference_size": 60000,
                    "reference_id": "ref-1", "late_events": 3, "calibrated": True},
    "StageMetrics": {"stage": "ingest", "worker": "w1", "emitted_at": 1_700_000_000_000, "interval_s": 5.0,
                     "events_in": 1000, "events_out": 990, "rejected": 10, "duplicates": 2, "replays": 0,
                     "errors": 0, "messages": 20, "batch_size_mean": 50.0,
                     "processing_ms": {"p50": 0.4, "p95": 1.2, "p99": 3.0},
                     "event_lag_ms": {"p50": 5.0, "p95": 12.0, "p99": 30.0}, "consumer_lag": 0,
                     "rss_bytes": 150_000_000, "inputs": {"missing.category": 0.2}, "outputs": {"profiles": 900.0}},
    "Alert": {"alert_id": "a1", "name": "drift.input.event_type", "severity": "WARNING", "stage": "drift",
              "message": "PSI 0.31 > 0.2", "created": 1_700_000_000_000, "model_name": None,
              "evidence": {"value": "0.31", "threshold": "0.2"}},
    "Interactions": {"origin": "w1:4242:1800000000000", "events": [
        {"item_id": "i3", "category": "books", "event_type": "click", "timestamp": 1_800_000_000_000,
         "recent": ["i9", "i1"]},
        {"item_id": "i4", "category": None, "event_type": "view", "timestamp": 1_800_000_000_500, "recent": []}]},
    "ControlCommand": {"command_id": "c1", "model_name": "reco", "action": "CANARY", "version": 5,
                       "args": {"steps": "5,10,25,50,100"}, "issued_at": 1_700_000_000_000, "issued_by": "ops"},
}
REALISTIC["UserState"] = {"profile": REALISTIC["UserProfile"],
                          "seen_ids": array("q", [-5, 2 ** 62, 17]).tobytes(),
                          "seen_ts": array("q", [1_700_000_000_000, 1_700_000_000_001, 1_700_000_000_002]).tobytes()}


def test_user_state_encoding_is_the_profile_encoding_plus_the_byte_fields():
    st = REALISTIC["UserState"]
    assert REG.encode("UserState", st) == REG.encode("UserProfile", st["profile"]) + avro_bytes(st["seen_ids"]) \
        + avro_bytes(st["seen_ts"])
    data = REG.encode("UserState", st)
    profile, used = REG.decode_prefix("UserProfile", data)
    assert profile == st["profile"] and data[:used] == REG.encode("UserProfile", st["profile"])


def test_every_schema_has_a_realistic_example():
    assert set(REALISTIC) | {"ClickMessage"} == set(REG.names)


@pytest.mark.parametrize("name", sorted(REALISTIC))
def test_round_trip(name):
    assert REG.decode(name, REG.encode(name, REALISTIC[name])) == REALISTIC[name]


def test_click_message_carries_an_event_or_a_batch():
    assert REG.decode_clicks(REG.encode_click(EVENTS[1])) == ("ClickEvent", EVENTS[1])
    batch = REALISTIC["ClickBatch"]
    assert REG.decode_clicks(REG.encode_batch(batch)) == ("ClickBatch", batch)
    # a single event costs one byte more than the bare record (the union branch)
    assert len(REG.encode_click(EVENTS[1])) == len(REG.encode("ClickEvent", EVENTS[1])) + 1


@pytest.mark.parametrize("name", sorted(REALISTIC))
def test_record_classes_round_trip(name):
    cls = records.RECORD_CLASSES[name]
    obj = records.from_dict(cls, REG.decode(name, REG.encode(name, REALISTIC[name])))
    assert REG.encode(name, records.to_dict(obj)) == REG.encode(name, REALISTIC[name])


AVRO_TO_PY = {"string": str, "long": int, "int": int, "double": float, "float": float, "boolean": bool,
              "bytes": bytes}


def _expected_type(avro: typing.Any) -> typing.Any:
    if isinstance(avro, str):
        return AVRO_TO_PY.get(avro) or records.RECORD_CLASSES[avro.rsplit(".", 1)[-1]]
    if isinstance(avro, list):
        non_null = [a for a in avro if a != "null"]
        assert len(non_null) == 1 and "null" in avro, avro
        return typing.Optional[_expected_type(non_null[0])]
    kind = avro["type"]
    if kind == "map":
        return dict[str, _expected_type(avro["values"])]
    if kind == "array":
        return list[_expected_type(avro["items"])]
    if kind == "enum":
        return str
    if kind == "record":
        return records.RECORD_CLASSES[avro["name"]]
    return _expected_type(kind)


def _record_schemas():
    out = {}
    for name, raw in REG.raw.items():
        if isinstance(raw, dict):
            out[name] = raw
            for f in raw["fields"]:  # nested named records (ScoredItem)
                t = f["type"]
                if isinstance(t, dict) and t.get("type") == "array" and isinstance(t["items"], dict):
                    out[t["items"]["name"]] = t["items"]
    return out


@pytest.mark.parametrize("name", sorted(_record_schemas()))
def test_record_class_matches_schema_field_by_field(name):
    schema = _record_schemas()[name]
    cls = records.RECORD_CLASSES[name]
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    assert set(fields) == {f["name"] for f in schema["fields"]}, name
    for f in schema["fields"]:
        assert hints[f["name"]] == _expected_type(f["type"]), (name, f["name"])
        has_default = fields[f["name"]].default is not dataclasses.MISSING or \
            fields[f["name"]].default_factory is not dataclasses.MISSING
        assert has_default == ("default" in f), (name, f["name"], "default mismatch")


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(name=st.sampled_from(REG.names), data=st.binary(max_size=300))
def test_random_bytes_give_only_serde_error(name, data):
    try:
        REG.decode(name, data)
    except SerdeError as exc:
        assert str(exc).startswith(f"cannot decode {name}")


@settings(max_examples=300, deadline=None)
@given(name=st.sampled_from(sorted(REALISTIC)), cut=st.integers(min_value=0, max_value=10_000))
def test_truncated_bytes_give_serde_error(name, cut):
    data = REG.encode(name, REALISTIC[name])
    cut = cut % len(data)  # strictly shorter than the record
    with pytest.raises(SerdeError):
        REG.decode(name, data[:cut])


@settings(max_examples=200, deadline=None)
@given(data=st.binary(min_size=1, max_size=50))
def test_trailing_bytes_are_an_error(data):
    good = REG.encode("ClickEvent", EVENTS[0])
    with pytest.raises(SerdeError, match="trailing"):
        REG.decode("ClickEvent", good + data)


def test_wrong_schema_is_reported():
    data = REG.encode("Alert", REALISTIC["Alert"])
    with pytest.raises(SerdeError):
        REG.decode("UserProfile", data)


@pytest.mark.parametrize("record,needle", [
    ({"event_id": "e", "user_id": "u", "event_type": "view"}, "timestamp"),
    ({"event_id": "e", "user_id": 5, "event_type": "view", "timestamp": 1}, "user_id"),
])
def test_unencodable_record_is_a_serde_error(record, needle):
    with pytest.raises(SerdeError, match=needle):
        REG.encode("ClickEvent", record)


def test_union_needs_a_branch_and_unknown_schema():
    with pytest.raises(SerdeError, match="branch"):
        REG.encode("ClickMessage", EVENTS[0])
    with pytest.raises(UnknownSchemaError, match="unknown schema 'Nope'"):
        REG.decode("Nope", b"")
    with pytest.raises(SerdeError, match="expected bytes"):
        REG.decode("ClickEvent", "text")  # type: ignore[arg-type]
