"""ingest: validate the meaning of a decoded event, drop duplicates, pseudonymise.

Schema validity is the serde's job; this module checks meaning and raises
:class:`~stream.errors.ValidationError` with a short reason code for the DLQ.

>>> cfg = IngestConfig()
>>> ev = {"event_id": "e1", "user_id": "u1", "event_type": "view", "timestamp": 1_000,
...       "item_id": "i1", "price": None, "dwell_ms": 10}
>>> validate(ev, now_ms=2_000, cfg=cfg) is ev
True
>>> validate({**ev, "event_type": "teleport"}, now_ms=2_000, cfg=cfg)
Traceback (most recent call last):
...
stream.errors.ValidationError: event_type 'teleport' is not one of: view, click, add_to_cart, purchase, search, recommend_request
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import MutableSequence

from stream.errors import ValidationError

#: event types that must name an item
ITEM_EVENTS = frozenset({"view", "click", "add_to_cart", "purchase"})


@dataclass(frozen=True)
class IngestConfig:
    """Also the ``ingest`` settings section (``STREAM_INGEST_<FIELD>``)."""
    event_types: tuple[str, ...] = ("view", "click", "add_to_cart", "purchase", "search", "recommend_request")
    #: events older than this (or newer than max_future_s) relative to now are rejected
    max_skew_s: float = 7 * 24 * 3600.0
    max_future_s: float = 300.0
    #: a repeated event_id among the user's last dedupe_ids events within this window is a duplicate
    dedupe_window_s: float = 600.0
    dedupe_ids: int = 32
    max_price: float = 1_000_000.0
    max_dwell_ms: int = 24 * 3600 * 1000
    #: non-empty: user ids are replaced by a keyed hash (HMAC-SHA256) with this key
    pseudonymise_key: str = ""
    #: longest id (event, user, session, item, rec) and label (category, device, country), in
    #: characters: a profile keeps 20 items and 32 categories, so these bound it at ~15 KB, far
    #: below the broker's 1 MB message limit (two 600 KB item ids took every worker down)
    max_id_chars: int = 256
    max_label_chars: int = 128


ID_FIELDS = ("event_id", "user_id", "session_id", "item_id", "rec_id")
LABEL_FIELDS = ("category", "device", "country")


def validate(ev: dict, now_ms: int, cfg: IngestConfig) -> dict:
    """Return ``ev`` if its meaning is valid, else raise ValidationError(reason, message)."""
    if not ev.get("event_id"):
        raise ValidationError("missing_event_id", "event_id is empty")
    for fields, setting, limit in ((ID_FIELDS, "max_id_chars", cfg.max_id_chars),
                                   (LABEL_FIELDS, "max_label_chars", cfg.max_label_chars)):
        for f in fields:
            value = ev.get(f)
            if value is not None and len(value) > limit:
                raise ValidationError("field_too_long", f"event {ev['event_id'][:64]}: {f} has {len(value)} "
                                      f"characters (ingest.{setting}={limit})")
    if not ev.get("user_id"):
        raise ValidationError("missing_user_id", f"event {ev['event_id']}: user_id is empty")
    if not ev["user_id"].isprintable():
        raise ValidationError("invalid_user_id", f"event {ev['event_id']}: user_id has control characters")
    etype = ev.get("event_type")
    if etype not in cfg.event_types:
        raise ValidationError("unknown_event_type",
                              f"event_type {etype!r} is not one of: {', '.join(cfg.event_types)}")
    ts = ev["timestamp"]
    if ts < now_ms - cfg.max_skew_s * 1000 or ts > now_ms + cfg.max_future_s * 1000:
        raise ValidationError("timestamp_out_of_range",
                              f"event {ev['event_id']}: timestamp {ts} is {(ts - now_ms) / 1000:+.0f}s from now "
                              f"(allowed -{cfg.max_skew_s:.0f}s..+{cfg.max_future_s:.0f}s)")
    if etype in ITEM_EVENTS and not ev.get("item_id"):
        raise ValidationError("missing_item_id", f"event {ev['event_id']}: {etype} without item_id")
    price = ev.get("price")
    if price is not None and not (0.0 <= price <= cfg.max_price):  # also rejects NaN
        raise ValidationError("price_out_of_range",
                              f"event {ev['event_id']}: price {price} outside 0..{cfg.max_price:g}")
    dwell = ev.get("dwell_ms")
    if dwell is not None and not 0 <= dwell <= cfg.max_dwell_ms:
        raise ValidationError("dwell_out_of_range",
                              f"event {ev['event_id']}: dwell_ms {dwell} outside 0..{cfg.max_dwell_ms}")
    return ev


def id_hash(event_id: str) -> int:
    """A stable signed 64-bit hash of an event id (fits an Avro long).

    >>> id_hash("e1") == id_hash("e1") and id_hash("e1") != id_hash("e2")
    True
    """
    return int.from_bytes(hashlib.blake2b(event_id.encode(), digest_size=8).digest(), "big", signed=True)


def is_duplicate(seen_ids: MutableSequence[int], seen_ts: MutableSequence[int], h: int, ts: int,
                 cfg: IngestConfig) -> bool:
    """Was this event id seen among the user's recent ids within the window?

    >>> is_duplicate([5], [1_000], 5, 2_000, IngestConfig(dedupe_window_s=10))
    True
    >>> is_duplicate([5], [1_000], 5, 20_000, IngestConfig(dedupe_window_s=10))
    False
    """
    if h not in seen_ids:  # the common case, at C speed for an array('q')
        return False
    window = cfg.dedupe_window_s * 1000
    for i in range(len(seen_ids) - 1, -1, -1):
        if seen_ids[i] == h and abs(ts - seen_ts[i]) <= window:
            return True
    return False


def remember(seen_ids: MutableSequence[int], seen_ts: MutableSequence[int], h: int, ts: int,
             cfg: IngestConfig) -> None:
    """Add an id to the bounded recent-id memory (in place; the caller owns the sequences)."""
    seen_ids.append(h)
    seen_ts.append(ts)
    if len(seen_ids) > cfg.dedupe_ids:
        seen_ids.pop(0)
        seen_ts.pop(0)


def pseudonymise(user_id: str, key: str) -> str:
    """Keyed hash of a user id (HMAC-SHA256, 128 bits, hex), stable for a given key.

    >>> pseudonymise("alice", "k") == pseudonymise("alice", "k") != pseudonymise("alice", "k2")
    True
    """
    return "p_" + hmac.new(key.encode(), user_id.encode(), hashlib.sha256).hexdigest()[:32]


def forward_tag(user_id: str, event_id: str, key: str) -> bytes:
    """What ingest puts in the header of an event it forwards to its user's partition, so that
    it is not pseudonymised twice; keyed, so an upstream header cannot skip pseudonymisation.

    >>> forward_tag("p_1", "e1", "k") == forward_tag("p_1", "e1", "k") != forward_tag("alice", "e1", "k")
    True
    """
    return hmac.new(key.encode(), f"forwarded\0{user_id}\0{event_id}".encode(), hashlib.sha256).hexdigest()[:32].encode()
