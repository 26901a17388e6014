"""A realistic synthetic clickstream (pure: no Kafka), for the CLI demo, tests and load/.

Users have latent category preferences (Dirichlet), browse in sessions, and pick items
with Zipf popularity inside a category. A configurable share of records is malformed,
each with the reason ingest must give, so tests can check every reject.

>>> g = Workload(seed=1, users=10)
>>> e = g.event()
>>> sorted(e)[:3], e["event_type"] in EVENT_MIX
(['category', 'country', 'device'], True)
"""

from __future__ import annotations

import bisect
import random
import time
import uuid
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np

EVENT_MIX = {"view": 0.70, "click": 0.15, "add_to_cart": 0.06, "purchase": 0.02, "search": 0.03,
             "recommend_request": 0.04}
DEVICES = ("mobile", "desktop", "tablet")
COUNTRIES = ("DE", "FR", "US", "GB", "NL", "ES", "IT", "PL")

#: kinds of malformed records and the DLQ reason ingest gives for each
MALFORMED_REASONS = {
    "garbage": "undecodable",
    "truncated": "undecodable",
    "missing_user_id": "missing_user_id",
    "missing_event_id": "missing_event_id",
    "unknown_event_type": "unknown_event_type",
    "absurd_timestamp": "timestamp_out_of_range",
    "negative_price": "price_out_of_range",
}


@dataclass
class _User:
    user_id: str
    prefs: np.ndarray
    cum: list
    device: str
    country: str
    session_id: str = ""
    session_left: int = 0


@dataclass
class Workload:
    """Generates ClickEvent dicts. Event time advances by ``1000/rate`` ms per event from ``start_ms``."""

    seed: int = 0
    users: int = 1000
    items: int = 5000
    categories: int = 20
    zipf_a: float = 1.2
    rate: float = 1000.0
    start_ms: int | None = None
    user_prefix: str = "u"
    _rng: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        nprng = np.random.default_rng(self.seed)
        self.category_names = [f"c{i:02d}" for i in range(self.categories)]
        item_cat = nprng.integers(0, self.categories, self.items)
        self.item_category = {f"i{i}": self.category_names[c] for i, c in enumerate(item_cat)}
        self.item_price = {f"i{i}": round(float(p), 2) for i, p in
                           enumerate(nprng.lognormal(3.0, 0.8, self.items))}
        # items of each category, most popular first; Zipf weights over ranks
        self.cat_items: list[list[str]] = [[] for _ in range(self.categories)]
        for i, c in enumerate(item_cat):
            self.cat_items[c].append(f"i{i}")
        self._cum: list[list[float]] = []
        for items in self.cat_items:
            w = 1.0 / np.arange(1, len(items) + 1) ** self.zipf_a
            self._cum.append(list(np.cumsum(w / w.sum())))
        self._users = []
        for i in range(self.users):
            prefs = nprng.dirichlet(np.full(self.categories, 0.3))
            self._users.append(_User(f"{self.user_prefix}{i}", prefs, list(np.cumsum(prefs)),
                                     self._rng.choice(DEVICES), self._rng.choice(COUNTRIES)))
        activity = nprng.lognormal(0, 1, self.users)
        self._user_cum = list(np.cumsum(activity / activity.sum()))
        self._types = list(EVENT_MIX)
        self._type_cum = list(np.cumsum(list(EVENT_MIX.values())))
        self._t0 = int(time.time() * 1000) if self.start_ms is None else self.start_ms
        self._n = 0

    @property
    def now_ms(self) -> int:
        return self._t0 + int(self._n * 1000.0 / self.rate)

    def _pick(self, cum: list[float]) -> int:
        return min(bisect.bisect_left(cum, self._rng.random() * cum[-1]), len(cum) - 1)

    def user_prefs(self, user_id: str) -> np.ndarray:
        """The latent category preference vector of a user (ground truth)."""
        return self._users[int(user_id[len(self.user_prefix):])].prefs

    def event(self, user: int | None = None, event_type: str | None = None) -> dict:
        """One valid ClickEvent dict (of a random user and type, unless given)."""
        rng = self._rng
        u = self._users[self._pick(self._user_cum) if user is None else user]
        if u.session_left <= 0:
            u.session_id = uuid.UUID(int=rng.getrandbits(128)).hex[:16]
            u.session_left = 1 + int(rng.expovariate(1 / 8))
        u.session_left -= 1
        etype = event_type or self._types[self._pick(self._type_cum)]
        cat = self._pick(u.cum)
        item = self.cat_items[cat][self._pick(self._cum[cat])] if self.cat_items[cat] else None
        has_item = etype not in ("search", "recommend_request") and item is not None
        ev = {
            "event_id": uuid.UUID(int=rng.getrandbits(128)).hex,
            "user_id": u.user_id,
            "event_type": etype,
            "timestamp": self.now_ms,
            "session_id": u.session_id,
            "item_id": item if has_item else None,
            "category": self.category_names[cat] if has_item else None,
            "price": self.item_price[item] if has_item and etype in ("add_to_cart", "purchase") else None,
            "dwell_ms": int(rng.expovariate(1 / 15000)) if etype == "view" else None,
            "device": u.device,
            "country": u.country,
            "rec_id": None,
        }
        self._n += 1
        return ev

    def pick_user(self) -> int:
        return self._pick(self._user_cum)

    def events(self, n: int) -> Iterator[dict]:
        for _ in range(n):
            yield self.event()

    def malformed(self, kind: str) -> dict | bytes:
        """A malformed record of ``kind`` (see MALFORMED_REASONS): an event dict, or raw bytes."""
        if kind == "garbage":  # the first byte is never a valid union branch (0x00, 0x02)
            first = self._rng.choice([1] + list(range(3, 128)))
            return bytes([first] + [self._rng.getrandbits(8) for _ in range(self._rng.randint(0, 40))])
        ev = self.event()
        if kind == "truncated":
            return b"\x00" + ev["event_id"].encode()[:10]  # union branch 0 then a cut string
        if kind == "missing_user_id":
            ev["user_id"] = ""
        elif kind == "missing_event_id":
            ev["event_id"] = ""
        elif kind == "unknown_event_type":
            ev["event_type"] = "teleport"
        elif kind == "absurd_timestamp":
            ev["timestamp"] = 4_102_444_800_000 * 10  # year ~ 3200
        elif kind == "negative_price":
            ev["event_type"], ev["price"] = "purchase", -5.0
            ev["item_id"] = ev["item_id"] or "i0"
        else:
            raise ValueError(f"unknown malformed kind {kind!r}")
        return ev

    def mixed(self, n: int, malformed_share: float = 0.0) -> Iterator[tuple[dict | bytes, str | None]]:
        """``n`` records, each ``(record, expected_reject_reason or None)``."""
        kinds = list(MALFORMED_REASONS)
        for _ in range(n):
            if malformed_share and self._rng.random() < malformed_share:
                kind = self._rng.choice(kinds)
                yield self.malformed(kind), MALFORMED_REASONS[kind]
            else:
                yield self.event(), None
