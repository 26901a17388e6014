"""A realistic synthetic clickstream (pure: no Kafka), for the CLI demo, tests and load/.

Users have latent category preferences (Dirichlet), browse in sessions, and pick items
with Zipf popularity inside a category. A configurable share of records is malformed,
each with the reason ingest must give, so tests can check every reject.

With ``tastes=D`` users also have item-level tastes, as real logs do: users and items
get D-dimensional taste vectors (items near their category's centroid), a user picks an
item of a category with probability ~ Zipf popularity x ``exp(taste_strength * u.v)``,
a session sticks to one category (``session_focus``), and a view returns to one of the
user's recent items now and then (``revisit``). Two users with similar tastes then browse
similar items, so co-visitation carries the signal a category-only stream lacks, and
:meth:`Workload.affinity` gives the ground truth a simulator clicks by.

An optional :class:`Scenario` makes the stream drift at a known change point (see
``SCENARIOS``), so drift detection can be tested against ground truth.

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

#: drift scenarios (kind -> one-line description, e.g. for a CLI's help text)
SCENARIOS = {
    "stationary": "nothing changes (the default)",
    "sudden": "every user's category preferences switch at the change point (browsing and clicks)",
    "gradual": "like sudden, but old and new preferences blend linearly over the span (browsing and clicks)",
    "covariate": "a new cohort arrives (mostly tablets, mostly PL/ES, 3x prices, another user segment); "
                 "what users browse and click stays the same",
    "concept": "what users click switches to the new preferences; browsing (the inputs) stays the same",
    "upstream_bug": "a field (default: category) arrives empty (None) in events after the change point",
}
#: the covariate scenario's new cohort: device and country mix, price factor
COVARIATE_TABLET_SHARE = 0.8
COVARIATE_COUNTRIES = {"PL": 0.45, "ES": 0.35, "IT": 0.1, "NL": 0.1}
COVARIATE_PRICE_FACTOR = 3.0
#: the fields of a ClickEvent dict (what an upstream_bug scenario may empty)
EVENT_FIELDS = ("event_id", "user_id", "event_type", "timestamp", "session_id", "item_id", "category", "price",
                "dwell_ms", "device", "country", "rec_id")


@dataclass(frozen=True)
class Scenario:
    """A drift scenario with a known change point (event/wall time in ms).

    ``mix(t)`` is how far the change has gone at ``t``: 0 before ``change_at_ms``, 1 after
    it, except ``gradual``, which ramps linearly from 0 to 1 over ``span_ms``.

    >>> s = Scenario("gradual", change_at_ms=1_000, span_ms=400)
    >>> s.mix(999), s.mix(1_000), s.mix(s.midpoint_ms), s.mix(1_400), s.mix(9_999)
    (0.0, 0.0, 0.5, 1.0, 1.0)
    >>> Scenario("sudden", change_at_ms=1_000).mix(1_000), Scenario().mix(10**13)
    (1.0, 0.0)
    """

    kind: str = "stationary"
    change_at_ms: int = 0
    span_ms: int = 0
    field: str = "category"

    def __post_init__(self) -> None:
        if self.kind not in SCENARIOS:
            raise ValueError(f"unknown scenario kind {self.kind!r}; expected one of: {', '.join(SCENARIOS)}")
        if self.span_ms < 0:
            raise ValueError(f"span_ms must be >= 0, got {self.span_ms}")
        if self.field not in EVENT_FIELDS:
            raise ValueError(f"unknown event field {self.field!r}; expected one of: {', '.join(EVENT_FIELDS)}")

    def mix(self, t_ms: float) -> float:
        """The share of the changed behaviour at ``t_ms`` (0 = before, 1 = fully changed)."""
        if self.kind == "stationary" or t_ms < self.change_at_ms:
            return 0.0
        if self.kind == "gradual" and self.span_ms > 0:
            return min(1.0, (t_ms - self.change_at_ms) / self.span_ms)
        return 1.0

    @property
    def midpoint_ms(self) -> float:
        """When the change is half done: ``change_at_ms + span_ms/2`` for gradual, else ``change_at_ms``."""
        if self.kind == "gradual":
            return self.change_at_ms + self.span_ms / 2
        return self.change_at_ms


@dataclass
class _User:
    user_id: str
    prefs: np.ndarray
    cum: list
    device: str
    country: str
    session_id: str = ""
    session_left: int = 0
    shifted: np.ndarray | None = None  # the preferences after a sudden/gradual/concept change
    shifted_cum: list | None = None
    session_cat: int = 0  # tastes: the category this session sticks to
    recent: list = field(default_factory=list)  # tastes: the last items the user viewed


@dataclass
class Workload:
    """Generates ClickEvent dicts. Event time advances by ``1000/rate`` ms per event from ``start_ms``.

    With a ``scenario`` the stream drifts at its change point; the time it follows is the
    ``at_ms`` given to :meth:`event` / :meth:`pick_user`, else the event time ``now_ms``.
    Before the change point (and with no or a stationary scenario) the stream is exactly
    the same as without a scenario: scenario decisions use a separate RNG, drawn only once
    the change has begun, and never shift the main RNG stream.
    """

    seed: int = 0
    users: int = 1000
    items: int = 5000
    categories: int = 20
    zipf_a: float = 1.2
    rate: float = 1000.0
    start_ms: int | None = None
    user_prefix: str = "u"
    scenario: Scenario | None = None
    #: item-level tastes: the taste vectors' dimension (0: users like categories, not items)
    tastes: int = 0
    taste_strength: float = 3.0
    #: tastes: the chance that an event stays in its session's category
    session_focus: float = 0.6
    #: tastes: the chance that a view returns to one of the user's last 10 viewed items
    revisit: float = 0.2
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
        #: event time of the first event: start_ms, or the wall clock when the first event is made
        #: (set at construction it put the set-up's ~30 ms into every event's lag)
        self._t0: int | None = self.start_ms
        self._n = 0
        # drift scenarios: none of this touches the main RNG stream
        self._srng = random.Random(f"scenario:{self.seed}")
        for u in self._users:
            u.shifted = np.roll(u.prefs, self.categories // 2)
            u.shifted_cum = list(np.cumsum(u.shifted))
        self._half = self.users // 2  # covariate: users [half, users) are the new segment
        new = activity[self._half:]
        self._new_cum = list(np.cumsum(new / new.sum()))
        self._activity = activity / activity.sum()
        if self.tastes:
            self._init_tastes(item_cat)

    # --- item-level tastes (``tastes > 0``) ---------------------------------------------------

    def _init_tastes(self, item_cat: np.ndarray) -> None:
        """Taste vectors from their own RNG, so the category-level draws stay as they were."""
        trng = np.random.default_rng([self.seed, 1_000_003])
        d = self.tastes
        centroids = trng.normal(size=(self.categories, d))

        def unit(m: np.ndarray) -> np.ndarray:
            return m / np.maximum(np.linalg.norm(m, axis=1, keepdims=True), 1e-12)
        self._item_vec = unit(0.8 * unit(centroids)[item_cat] + trng.normal(size=(self.items, d)) / np.sqrt(d))
        prefs = np.array([u.prefs for u in self._users])
        self._user_vec = unit(unit(prefs @ centroids) + 0.7 * trng.normal(size=(self.users, d)) / np.sqrt(d))
        self._item_cat = item_cat
        self._item_index = {f"i{i}": i for i in range(self.items)}
        # Zipf weight of each item by its rank inside its category; items sorted by category
        self._zipf = np.zeros(self.items)
        for items in self.cat_items:
            idx = [int(x[1:]) for x in items]
            self._zipf[idx] = 1.0 / np.arange(1, len(idx) + 1) ** self.zipf_a
        self._by_cat = np.argsort(item_cat, kind="stable")
        self._cat_start = np.searchsorted(item_cat[self._by_cat], np.arange(self.categories + 1))
        self._taste_rng = random.Random(f"tastes:{self.seed}")
        self._within_cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._ref: dict[int, float] = {}

    def _within(self, u: int) -> tuple[np.ndarray, np.ndarray]:
        """User ``u``'s chance of each item given its category, and its cumulative sums in
        category order (category c's items span ``(c, c+1]``)."""
        got = self._within_cache.get(u)
        if got is None:
            w = self._zipf * np.exp(self.taste_strength * (self._item_vec @ self._user_vec[u]))
            per_cat = np.bincount(self._item_cat, weights=w, minlength=self.categories)
            within = w / per_cat[self._item_cat]
            got = self._within_cache[u] = (within, np.cumsum(within[self._by_cat]))
        return got

    def _taste_item(self, u: int, cat: int, r: float) -> str | None:
        start, end = self._cat_start[cat], self._cat_start[cat + 1]
        if start == end:
            return None
        cum = self._within(u)[1]
        lo = cum[start - 1] if start else 0.0
        pos = int(np.searchsorted(cum, lo + r * (cum[end - 1] - lo)))
        return f"i{int(self._by_cat[min(max(pos, start), end - 1)])}"

    def _taste_choice(self, u: _User, cat: int, etype: str) -> tuple[int, str | None]:
        """A tastes event's category and item: a recent item again (a ``revisit`` of a view),
        else the session's category (``session_focus``) and an item by popularity x taste.
        One draw of the main RNG per event, as without tastes, so event ids stay as they were."""
        trng, idx, r = self._taste_rng, int(u.user_id[len(self.user_prefix):]), self._rng.random()
        if etype == "view" and u.recent and trng.random() < self.revisit:
            item = u.recent[int(trng.random() * len(u.recent))]
            cat = int(self._item_cat[self._item_index[item]])
        else:
            if trng.random() < self.session_focus:
                cat = u.session_cat
            item = self._taste_item(idx, cat, r)
        if item is not None and etype == "view":
            u.recent.append(item)
            del u.recent[:-10]
        return cat, item

    def interest(self, user: int, prefs: np.ndarray | None = None) -> np.ndarray:
        """The chance that user ``user``'s next browse is each item (category preference x
        taste within the category), under ``prefs`` (default: the user's own)."""
        p = self._users[user].prefs if prefs is None else prefs
        return p[self._item_cat] * self._within(user)[0]

    def affinities(self, user: int) -> np.ndarray:
        """:meth:`affinity` of user ``user`` for every item (``i0``, ``i1``, ...), before any change."""
        q = self.interest(user)
        ref = self._ref.get(user)
        if ref is None:
            ref = self._ref[user] = float(np.partition(q, -10)[-10])
        return np.minimum(1.0, q / ref) if ref > 0 else np.zeros_like(q)

    def ground_truth_ctr(self, k: int = 10, sample: int = 300) -> dict[str, float]:
        """Mean affinity of a list of ``k`` items, over (up to ``sample``) users: ``random``
        (any items), ``popular`` (the ``k`` items most browsed over all users, weighted by
        activity) and ``ideal`` (each user's own top ``k``: the oracle). Needs tastes."""
        users = range(min(self.users, sample))
        aff = np.array([self.affinities(u) for u in users])
        interest = np.array([self.interest(u) for u in users])
        browsed = self._activity[:len(aff)] @ interest
        top = np.argsort(-browsed)[:k]
        return {"random": float(aff.mean()), "popular": float(aff[:, top].mean()),
                "ideal": float(np.sort(aff, axis=1)[:, -k:].mean())}

    def affinity(self, user_id: str, item_id: str, t_ms: float | None = None) -> float:
        """Ground truth in [0, 1]: how much the user likes the item, its :meth:`interest`
        over that of the user's 10th favourite item, capped at 1 (1 for the top 10).
        With a scenario, the interest follows :meth:`click_prefs` at ``t_ms``. 0 for an
        unknown user or item, or without tastes."""
        u, i = self.user_index(user_id), self._item_index.get(item_id) if self.tastes else None
        if u is None or i is None:
            return 0.0
        if u not in self._ref:
            self.affinities(u)
        ref = self._ref[u]
        prefs = self._users[u].prefs if t_ms is None else self.click_prefs(user_id, t_ms)
        q = float(prefs[self._item_cat[i]] * self._within(u)[0][i])
        return min(1.0, q / ref) if ref > 0 else 0.0

    def user_index(self, user_id: str) -> int | None:
        """The index of one of this workload's users, or None for anyone else."""
        if not user_id.startswith(self.user_prefix):
            return None
        rest = user_id[len(self.user_prefix):]
        if not rest.isdigit() or int(rest) >= self.users:
            return None
        return int(rest)

    @property
    def now_ms(self) -> int:
        if self._t0 is None:
            self._t0 = int(time.time() * 1000)
        return self._t0 + int(self._n * 1000.0 / self.rate)

    def _pick(self, cum: list[float], rng: random.Random | None = None) -> int:
        return min(bisect.bisect_left(cum, (rng or self._rng).random() * cum[-1]), len(cum) - 1)

    def _mix(self, t_ms: int, *kinds: str) -> float:
        """The scenario's mix at ``t_ms`` if it is one of ``kinds``, else 0."""
        sc = self.scenario
        return sc.mix(t_ms) if sc is not None and sc.kind in kinds else 0.0

    def _changed(self, m: float) -> bool:
        """Whether this event follows the changed behaviour (probability ``m``; no draw when 0)."""
        return m > 0.0 and self._srng.random() < m

    def user_prefs(self, user_id: str) -> np.ndarray:
        """The latent category preference vector of a user (ground truth, before any change)."""
        return self._users[int(user_id[len(self.user_prefix):])].prefs

    def shifted_prefs(self, user_id: str) -> np.ndarray:
        """A user's preferences after the change: ``user_prefs`` rolled by ``categories // 2``."""
        return self._users[int(user_id[len(self.user_prefix):])].shifted

    def click_prefs(self, user_id: str, t_ms: float) -> np.ndarray:
        """The preference vector a user's clicks follow at ``t_ms``.

        The original before the change; for sudden/gradual/concept ``(1-m)*original +
        m*shifted`` with ``m = scenario.mix(t_ms)``; covariate and upstream_bug never change it.
        """
        u = self._users[int(user_id[len(self.user_prefix):])]
        m = self._mix(t_ms, "sudden", "gradual", "concept")
        if m <= 0.0:
            return u.prefs
        if m >= 1.0:
            return u.shifted
        return (1.0 - m) * u.prefs + m * u.shifted

    def event(self, user: int | None = None, event_type: str | None = None, at_ms: int | None = None) -> dict:
        """One valid ClickEvent dict (of a random user and type, unless given).

        ``at_ms`` sets the event's timestamp and the scenario time (default: ``now_ms``).
        """
        rng = self._rng
        t = self.now_ms if at_ms is None else at_ms
        u = self._users[self.pick_user(t) if user is None else user]
        if u.session_left <= 0:
            u.session_id = uuid.UUID(int=rng.getrandbits(128)).hex[:16]
            u.session_left = 1 + int(rng.expovariate(1 / 8))
            if self.tastes:
                u.session_cat = self._pick(u.cum, self._taste_rng)
        u.session_left -= 1
        etype = event_type or self._types[self._pick(self._type_cum)]
        # sudden/gradual: the browsing category follows the shifted preferences (same main-RNG draw)
        cat = self._pick(u.shifted_cum if self._changed(self._mix(t, "sudden", "gradual")) else u.cum)
        if self.tastes:
            cat, item = self._taste_choice(u, cat, etype)
        else:
            item = self.cat_items[cat][self._pick(self._cum[cat])] if self.cat_items[cat] else None
        has_item = etype not in ("search", "recommend_request") and item is not None
        ev = {
            "event_id": uuid.UUID(int=rng.getrandbits(128)).hex,
            "user_id": u.user_id,
            "event_type": etype,
            "timestamp": t,
            "session_id": u.session_id,
            "item_id": item if has_item else None,
            "category": self.category_names[cat] if has_item else None,
            "price": self.item_price[item] if has_item and etype in ("add_to_cart", "purchase") else None,
            "dwell_ms": int(rng.expovariate(1 / 15000)) if etype == "view" else None,
            "device": u.device,
            "country": u.country,
            "rec_id": None,
        }
        if self._changed(self._mix(t, "covariate")):  # an event of the new cohort
            srng = self._srng
            ev["device"] = ("tablet" if srng.random() < COVARIATE_TABLET_SHARE
                            else srng.choice([d for d in DEVICES if d != "tablet"]))
            ev["country"] = srng.choices(list(COVARIATE_COUNTRIES), weights=list(COVARIATE_COUNTRIES.values()))[0]
            if ev["price"] is not None:
                ev["price"] = round(ev["price"] * COVARIATE_PRICE_FACTOR, 2)
        if self._changed(self._mix(t, "upstream_bug")):
            ev[self.scenario.field] = None
        self._n += 1
        return ev

    def pick_user(self, at_ms: int | None = None) -> int:
        """A random user's index, by activity. After a covariate change, with probability
        ``mix`` one of the new segment (the second half of the users) instead."""
        idx = self._pick(self._user_cum)
        if self._changed(self._mix(self.now_ms if at_ms is None else at_ms, "covariate")):
            idx = self._half + self._pick(self._new_cum, self._srng)
        return idx

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
