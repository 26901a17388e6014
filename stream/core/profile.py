"""profile: fold one event into a user's profile (pure, deterministic).

The profile records the source position (partition, offset, index inside a batch
message) of the last event it absorbed; an event at or below it is a replay and is
skipped, which makes the fold effectively-once on an at-least-once broker.

>>> cfg = ProfileConfig(last_items=2)
>>> p = None
>>> for i, (t, item) in enumerate([(0, "a"), (1_000, "b"), (2_000, "c")]):
...     ev = {"user_id": "u", "event_type": "view", "timestamp": t, "item_id": item,
...           "category": "books", "price": None}
...     p = fold(p, ev, Position(0, i, 0), cfg)
>>> p["version"], p["counts"], p["last_items"], p["sessions"]
(3, {'view': 3}, ['c', 'b'], 1)
>>> is_replay(p, Position(0, 1, 0))
True
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import NamedTuple

#: how much one event of each type says about the user's interest in its category
TYPE_WEIGHT = {"view": 1.0, "click": 2.0, "add_to_cart": 3.0, "purchase": 5.0}


@dataclass(frozen=True)
class ProfileConfig:
    affinity_half_life_s: float = 7 * 24 * 3600.0
    session_gap_s: float = 30 * 60.0
    last_items: int = 20
    max_categories: int = 32
    #: items remembered as consumed (4 bytes each; the oldest are forgotten first)
    consumed_max: int = 500


class Position(NamedTuple):
    """Where an event came from: source partition, offset, index inside the message."""
    partition: int
    offset: int
    index: int


def is_replay(profile: dict | None, pos: Position) -> bool:
    """Has this profile already absorbed the event at ``pos`` (same partition, not newer)?"""
    if profile is None or profile["source_partition"] != pos.partition:
        return False
    return (pos.offset, pos.index) <= (profile["source_offset"], profile["source_index"])


def new_profile(user_id: str, ts: int) -> dict:
    return {"user_id": user_id, "version": 0, "first_seen": ts, "last_seen": ts, "counts": {}, "affinity": {},
            "affinity_at": ts, "sessions": 0, "session_start": ts, "session_events": 0, "session_total_ms": 0,
            "last_items": [], "spend": 0.0, "source_partition": -1, "source_offset": -1, "source_index": -1,
            "consumed": b""}


def fold(profile: dict | None, ev: dict, pos: Position, cfg: ProfileConfig) -> dict:
    """Fold ``ev`` into ``profile`` (updated in place when given; a new one otherwise)."""
    ts = ev["timestamp"]
    p = profile if profile is not None else new_profile(ev["user_id"], ts)
    etype = ev["event_type"]
    counts = p["counts"]
    counts[etype] = counts.get(etype, 0) + 1

    # sessions: a gap of inactivity longer than session_gap_s starts a new one
    gap_ms = cfg.session_gap_s * 1000
    if p["sessions"] == 0:
        p["sessions"], p["session_start"], p["session_events"] = 1, ts, 1
    elif ts - p["last_seen"] > gap_ms:
        p["session_total_ms"] += p["last_seen"] - p["session_start"]
        p["sessions"] += 1
        p["session_start"], p["session_events"] = ts, 1
    else:
        p["session_events"] += 1
    if ts > p["last_seen"]:
        p["last_seen"] = ts
    if ts < p["first_seen"]:
        p["first_seen"] = ts

    category = ev.get("category")
    weight = TYPE_WEIGHT.get(etype, 0.0)
    if category and weight:
        _add_affinity(p, category, weight, ts, cfg)

    item = ev.get("item_id")
    if item:
        items = p["last_items"]
        if item in items:
            items.remove(item)
        items.insert(0, item)
        del items[cfg.last_items:]
        _consume(p, item, cfg.consumed_max)
    if etype == "purchase" and ev.get("price"):
        p["spend"] += ev["price"]

    p["version"] += 1
    p["source_partition"], p["source_offset"], p["source_index"] = pos
    return p


def item_hash(item: str) -> int:
    """A 32-bit hash of an item id (CRC-32): what a profile stores of the items a user consumed."""
    return zlib.crc32(item.encode())


def _consume(p: dict, item: str, limit: int) -> None:
    """Remember ``item`` among the user's consumed items (a 4-byte hash; the oldest go first)."""
    h = item_hash(item).to_bytes(4, "little")
    raw = p.get("consumed", b"")
    if has_consumed(raw, h):
        return
    raw += h
    if len(raw) > 4 * limit:
        raw = raw[len(raw) - 4 * limit:]
    p["consumed"] = raw


def has_consumed(raw: bytes, h: bytes) -> bool:
    """Is the 4-byte hash ``h`` one of the packed hashes in ``raw`` (aligned matches only)?"""
    k = raw.find(h)
    while k >= 0:
        if k % 4 == 0:
            return True
        k = raw.find(h, k + 1)
    return False


def consumed(profile: dict, item: str) -> bool:
    """Has the user interacted with ``item`` (within the last ``consumed_max`` distinct items)?"""
    return has_consumed(profile.get("consumed", b""), item_hash(item).to_bytes(4, "little"))


def _add_affinity(p: dict, category: str, weight: float, ts: int, cfg: ProfileConfig) -> None:
    """Exponentially decayed affinity, stored as of ``affinity_at``: the affinity at time t is the
    stored value times 0.5 ** ((t - affinity_at) / half-life).

    An event adds its weight scaled to ``affinity_at`` (grown for a later event, shrunk for a
    late one), so an event costs one power, not a decay of every category (that loop was a
    quarter of the fold). Once an event is more than a half-life past ``affinity_at`` the values
    are decayed to it and ``affinity_at`` moves there, which keeps the stored values within a
    factor 2 of the affinities they stand for. Every reader compares categories (shares,
    rankings), which the common scale does not change."""
    half_life_ms = cfg.affinity_half_life_s * 1000
    aff = p["affinity"]
    at = p["affinity_at"]
    if ts - at > half_life_ms:
        decay = 0.5 ** ((ts - at) / half_life_ms)
        for k in aff:
            aff[k] *= decay
        p["affinity_at"] = at = ts
    aff[category] = aff.get(category, 0.0) + weight * 2.0 ** ((ts - at) / half_life_ms)
    if len(aff) > cfg.max_categories:
        del aff[min(aff, key=aff.__getitem__)]


def affinity_now(profile: dict, now_ms: int, cfg: ProfileConfig) -> dict[str, float]:
    """The affinities decayed to ``now_ms`` (for readers; the stored values are as of affinity_at)."""
    decay = 0.5 ** (max(0, now_ms - profile["affinity_at"]) / (cfg.affinity_half_life_s * 1000))
    return {k: v * decay for k, v in profile["affinity"].items()}
