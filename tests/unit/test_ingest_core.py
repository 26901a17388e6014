import pytest

from stream.core import ingest
from stream.core.ingest import IngestConfig, validate
from stream.errors import ValidationError

NOW = 1_800_000_000_000
CFG = IngestConfig(max_skew_s=3600, max_future_s=60, dedupe_window_s=10, dedupe_ids=3, max_price=1000,
                   max_dwell_ms=60_000)


def ev(**kw):
    base = {"event_id": "e1", "user_id": "u1", "event_type": "view", "timestamp": NOW - 1000, "item_id": "i1",
            "category": "c1", "price": None, "dwell_ms": 100}
    base.update(kw)
    return base


def test_valid_event_passes():
    assert validate(ev(), NOW, CFG) == ev()
    assert validate(ev(event_type="search", item_id=None), NOW, CFG)["event_type"] == "search"


@pytest.mark.parametrize("change,reason", [
    ({"event_id": ""}, "missing_event_id"),
    ({"user_id": ""}, "missing_user_id"),
    ({"user_id": "u\x00fence"}, "invalid_user_id"),
    ({"item_id": "i" * 257}, "field_too_long"),
    ({"user_id": "u" * 257}, "field_too_long"),
    ({"event_id": "e" * 257}, "field_too_long"),
    ({"category": "c" * 129}, "field_too_long"),
    ({"country": "x" * 129}, "field_too_long"),
    ({"event_type": "teleport"}, "unknown_event_type"),
    ({"event_type": ""}, "unknown_event_type"),
    ({"timestamp": NOW - 3601 * 1000}, "timestamp_out_of_range"),
    ({"timestamp": NOW + 61 * 1000}, "timestamp_out_of_range"),
    ({"timestamp": 0}, "timestamp_out_of_range"),
    ({"item_id": None}, "missing_item_id"),
    ({"event_type": "purchase", "item_id": ""}, "missing_item_id"),
    ({"price": -0.01}, "price_out_of_range"),
    ({"price": 1000.01}, "price_out_of_range"),
    ({"price": float("nan")}, "price_out_of_range"),
    ({"dwell_ms": -1}, "dwell_out_of_range"),
    ({"dwell_ms": 60_001}, "dwell_out_of_range"),
])
def test_every_rule_rejects_with_its_reason(change, reason):
    with pytest.raises(ValidationError) as info:
        validate(ev(**change), NOW, CFG)
    assert info.value.reason == reason
    assert str(info.value)  # a human-readable message


def test_boundaries_are_inclusive():
    validate(ev(timestamp=NOW - 3600 * 1000, price=0.0, dwell_ms=60_000), NOW, CFG)
    validate(ev(timestamp=NOW + 60 * 1000, price=1000.0, dwell_ms=0), NOW, CFG)


def test_dedupe_window_and_capacity():
    ids, ts = [], []
    h = [ingest.id_hash(f"e{i}") for i in range(5)]
    ingest.remember(ids, ts, h[0], NOW, CFG)
    assert ingest.is_duplicate(ids, ts, h[0], NOW + 10_000, CFG)      # inside the 10 s window
    assert not ingest.is_duplicate(ids, ts, h[0], NOW + 10_001, CFG)  # outside it
    assert not ingest.is_duplicate(ids, ts, h[1], NOW, CFG)
    for x in h[1:4]:
        ingest.remember(ids, ts, x, NOW, CFG)
    assert len(ids) == 3 == len(ts)                                    # bounded memory
    assert not ingest.is_duplicate(ids, ts, h[0], NOW, CFG)            # the oldest was forgotten
    assert ingest.is_duplicate(ids, ts, h[3], NOW, CFG)


def test_id_hash_is_a_signed_64_bit_long():
    values = [ingest.id_hash(f"event-{i}") for i in range(1000)]
    assert all(-2 ** 63 <= v < 2 ** 63 for v in values)
    assert len(set(values)) == 1000


def test_pseudonymise_is_keyed_and_stable():
    a = ingest.pseudonymise("alice", "k1")
    assert a == ingest.pseudonymise("alice", "k1")
    assert a != ingest.pseudonymise("bob", "k1") and a != ingest.pseudonymise("alice", "k2")
    assert "alice" not in a and a.startswith("p_")
