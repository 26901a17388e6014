"""Per-user state (profile + dedupe memory) with coalesced, encode-once writes.

Handlers read and update :class:`UserState` objects in an in-process cache and call
:meth:`UserStates.changed`. At each commit point (:meth:`UserStates.mark_commit`) every
changed user becomes pending, and is encoded once before the offsets are written
(:meth:`UserStates.flush_pending`, in slices of a time budget, so events keep flowing
meanwhile); those bytes become the table value (with the dedupe memory appended: that is
exactly the Avro encoding of ``UserState``), the ``profiles.v1`` record and the Redis
value. A hot user therefore costs one encode per commit, not one per event, and the
changelog is never behind the committed input. A pending user changed again before it is
written is written with its newer state: the state carries its own per-partition
watermarks, so state ahead of the committed input is harmless on replay.
"""

from __future__ import annotations

import time
from array import array
from collections import deque
from typing import Callable, NamedTuple, Protocol

from stream.serde import SchemaRegistry, avro_bytes


class UserState:
    __slots__ = ("profile", "seen_ids", "seen_ts", "partition")

    def __init__(self, profile: dict | None, seen_ids: array, seen_ts: array, partition: int) -> None:
        self.profile, self.seen_ids, self.seen_ts, self.partition = profile, seen_ids, seen_ts, partition


class Flushed(NamedTuple):
    user_id: str
    partition: int
    version: int
    profile_bytes: bytes  # the Avro UserProfile


class TablePort(Protocol):
    def get(self, user_id: str) -> bytes | None: ...

    def put(self, user_id: str, value: bytes, partition: int) -> None: ...


def pack(values: array) -> bytes:
    return values.tobytes()


def unpack(data: bytes) -> array:
    a = array("q")
    a.frombytes(data)
    return a


class UserStates:
    def __init__(self, table: TablePort, registry: SchemaRegistry, capacity: int = 200_000) -> None:
        self.table = table
        self.registry = registry
        self.capacity = capacity
        self.cache: dict[str, UserState] = {}
        #: changed users -> monotonic time of their first unflushed change (oldest first)
        self.dirty: dict[str, float] = {}
        #: users changed before the last commit point and not written since (+ their order)
        self.pending: set[str] = set()
        self._pending_order: deque[str] = deque()

    def get(self, user_id: str, partition: int) -> UserState:
        st = self.cache.get(user_id)
        if st is None:
            raw = self.table.get(user_id)
            st = UserState(None, array("q"), array("q"), partition) if raw is None else self.decode(raw, partition)
            if len(self.cache) >= self.capacity:
                self._evict()
            self.cache[user_id] = st
        return st

    def changed(self, user_id: str) -> None:
        if user_id not in self.dirty:
            self.dirty[user_id] = time.monotonic()

    def decode(self, raw: bytes, partition: int) -> UserState:
        rec = self.registry.decode("UserState", raw)
        return UserState(rec["profile"], unpack(rec["seen_ids"]), unpack(rec["seen_ts"]), partition)

    def encode(self, st: UserState) -> tuple[bytes, bytes]:
        """(UserProfile bytes, UserState bytes): the second is the first plus the dedupe memory."""
        profile_bytes = self.registry.encode("UserProfile", st.profile)
        return profile_bytes, profile_bytes + avro_bytes(pack(st.seen_ids)) + avro_bytes(pack(st.seen_ts))

    def mark_commit(self) -> int:
        """Fix a commit point: every changed user is pending until written; returns how many are."""
        for user_id in self.dirty:
            if user_id not in self.pending:
                self.pending.add(user_id)
                self._pending_order.append(user_id)
        self.dirty = {}
        return len(self.pending)

    def flush_pending(self, budget_s: float, limit: int | None = None) -> list[Flushed]:
        """Write pending users, oldest first, until ``budget_s`` seconds are spent (at least one)
        or ``limit`` users are written."""
        out: list[Flushed] = []
        order, pending = self._pending_order, self.pending
        deadline = time.perf_counter() + budget_s
        left = len(pending) if limit is None else limit
        while order and left > 0:
            user_id = order.popleft()
            if user_id not in pending:
                continue  # written by a slice since
            self._write(user_id, out)
            left -= 1
            if time.perf_counter() >= deadline:
                break
        return out

    def flush(self, limit: int | None = None, older_than: float = 0.0) -> list[Flushed]:
        """Write changed states to the table port, each once: all of them, or a slice.

        Without ``limit`` every changed or pending user is written. With one (between
        commits) at most ``limit`` users whose first change is at least ``older_than``
        seconds old are written, so the loop stays responsive and a hot user is not
        re-encoded on every slice.
        """
        if limit is None:
            # a user pending again after a write may stand in the order twice: once each
            users = list(dict.fromkeys([u for u in self._pending_order if u in self.pending] + list(self.dirty)))
        else:
            cutoff = time.monotonic() - older_than
            users = []
            for user_id, since in self.dirty.items():  # oldest first
                if since > cutoff or len(users) >= limit:
                    break
                users.append(user_id)
        out: list[Flushed] = []
        for user_id in users:
            self._write(user_id, out)
        if not self.pending:
            self._pending_order.clear()
        return out

    def _write(self, user_id: str, out: list[Flushed]) -> None:
        """Encode one user's current state to the table port; it is neither changed nor pending after."""
        self.dirty.pop(user_id, None)
        self.pending.discard(user_id)
        st = self.cache.get(user_id)
        if st is None or st.profile is None:
            return
        profile_bytes, state_bytes = self.encode(st)
        self.table.put(user_id, state_bytes, st.partition)
        out.append(Flushed(user_id, st.partition, st.profile["version"], profile_bytes))

    def _evict(self) -> None:
        """Drop the oldest clean entries until the cache is at 90% of its capacity."""
        excess = len(self.cache) - int(self.capacity * 0.9)
        dirty, pending = self.dirty, self.pending
        for user_id in [u for u in self.cache if u not in dirty and u not in pending][:max(0, excess)]:
            del self.cache[user_id]

    def forget_partitions(self, keep: Callable[[int], bool]) -> None:
        """After a rebalance: drop cached users whose partition this worker no longer owns."""
        for user_id in [u for u, st in self.cache.items() if not keep(st.partition)]:
            del self.cache[user_id]
            self.dirty.pop(user_id, None)
            self.pending.discard(user_id)
