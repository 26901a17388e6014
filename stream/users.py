"""Per-user state (profile + dedupe memory) with coalesced, encode-once writes.

Handlers read and update :class:`UserState` objects in an in-process cache and call
:meth:`UserStates.changed`. At each commit, :meth:`UserStates.flush` encodes every
changed profile once; those bytes become the table value (with the dedupe memory
appended: that is exactly the Avro encoding of ``UserState``), the ``profiles.v1``
record and the Redis value. A hot user therefore costs one encode per commit, not
one per event, and the changelog is never behind the committed input.
"""

from __future__ import annotations

import time
from array import array
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

    def flush(self, limit: int | None = None, older_than: float = 0.0) -> list[Flushed]:
        """Write changed states to the table port, each once: all of them, or a slice.

        Without ``limit`` (right before a commit) every changed user is written: nothing
        acknowledged may stay unwritten. With one (between commits) at most ``limit`` users
        whose first change is at least ``older_than`` seconds old are written, so the loop
        stays responsive and a hot user is not re-encoded on every slice.
        """
        dirty = self.dirty
        if limit is None:
            users, self.dirty = list(dirty), {}
        else:
            cutoff = time.monotonic() - older_than
            users = []
            for user_id, since in dirty.items():  # oldest first
                if since > cutoff or len(users) >= limit:
                    break
                users.append(user_id)
            for user_id in users:
                del dirty[user_id]
        out = []
        for user_id in users:
            st = self.cache.get(user_id)
            if st is None or st.profile is None:
                continue
            profile_bytes, state_bytes = self.encode(st)
            self.table.put(user_id, state_bytes, st.partition)
            out.append(Flushed(user_id, st.partition, st.profile["version"], profile_bytes))
        return out

    def _evict(self) -> None:
        """Drop the oldest clean entries until the cache is at 90% of its capacity."""
        excess = len(self.cache) - int(self.capacity * 0.9)
        for user_id in [u for u in self.cache if u not in self.dirty][:max(0, excess)]:
            del self.cache[user_id]

    def forget_partitions(self, keep: Callable[[int], bool]) -> None:
        """After a rebalance: drop cached users whose partition this worker no longer owns."""
        for user_id in [u for u, st in self.cache.items() if not keep(st.partition)]:
            del self.cache[user_id]
            self.dirty.pop(user_id, None)
