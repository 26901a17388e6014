"""Per-user state (profile + dedupe memory) with coalesced writes.

Handlers read and update :class:`UserState` objects in an in-process cache. Changed
users are remembered and written out in bulk, once per user per flush, instead of
once per event:

- ``flush_table()``: encode each changed state once and hand it to the table port
  (the Faust table's store + its changelog topic). Called before offsets are committed,
  so the changelog is never behind the committed input.
- ``take_for_redis()`` / ``take_for_topic()``: the profiles changed since the last call,
  for the Redis writer and for ``profiles.v1`` (so a hot user is written at most once per
  interval).
"""

from __future__ import annotations

from typing import Callable, Protocol

from stream.serde import SchemaRegistry


class UserState:
    __slots__ = ("profile", "seen_ids", "seen_ts", "partition")

    def __init__(self, profile: dict | None, seen_ids: list[int], seen_ts: list[int], partition: int) -> None:
        self.profile, self.seen_ids, self.seen_ts, self.partition = profile, seen_ids, seen_ts, partition


class TablePort(Protocol):
    def get(self, user_id: str) -> bytes | None: ...

    def put(self, user_id: str, value: bytes, partition: int) -> None: ...


class UserStates:
    def __init__(self, table: TablePort, registry: SchemaRegistry, capacity: int = 200_000) -> None:
        self.table = table
        self.registry = registry
        self.capacity = capacity
        self.cache: dict[str, UserState] = {}
        self.dirty_table: set[str] = set()
        self.dirty_redis: set[str] = set()
        self.dirty_topic: set[str] = set()

    def get(self, user_id: str, partition: int) -> UserState:
        st = self.cache.get(user_id)
        if st is None:
            raw = self.table.get(user_id)
            if raw is None:
                st = UserState(None, [], [], partition)
            else:
                rec = self.registry.decode("UserState", raw)
                st = UserState(rec["profile"], rec["seen_ids"], rec["seen_ts"], partition)
            if len(self.cache) >= self.capacity:
                self._evict()
            self.cache[user_id] = st
        return st

    def changed(self, user_id: str) -> None:
        self.dirty_table.add(user_id)
        self.dirty_redis.add(user_id)
        self.dirty_topic.add(user_id)

    def encode(self, st: UserState) -> bytes:
        return self.registry.encode("UserState", {"profile": st.profile, "seen_ids": st.seen_ids,
                                                   "seen_ts": st.seen_ts})

    def flush_table(self) -> int:
        """Write every changed state to the table port once; returns how many."""
        n = 0
        for user_id in self.dirty_table:
            st = self.cache[user_id]
            if st.profile is not None:
                self.table.put(user_id, self.encode(st), st.partition)
                n += 1
        self.dirty_table.clear()
        return n

    def _take(self, dirty: set[str]) -> list[dict]:
        out = [self.cache[u].profile for u in dirty if u in self.cache and self.cache[u].profile is not None]
        dirty.clear()
        return out

    def take_for_redis(self) -> list[dict]:
        return self._take(self.dirty_redis)

    def take_for_topic(self) -> list[tuple[int, dict]]:
        out = [(self.cache[u].partition, self.cache[u].profile) for u in self.dirty_topic
               if u in self.cache and self.cache[u].profile is not None]
        self.dirty_topic.clear()
        return out

    def _evict(self) -> None:
        """Drop the oldest clean entries until the cache is at 90% of its capacity."""
        target = int(self.capacity * 0.9)
        busy = self.dirty_table | self.dirty_redis | self.dirty_topic
        for user_id in [u for u in self.cache if u not in busy][: max(0, len(self.cache) - target)]:
            del self.cache[user_id]

    def forget_partitions(self, keep: Callable[[int], bool]) -> None:
        """After a rebalance: drop cached users whose partition this worker no longer owns."""
        for user_id in [u for u, st in self.cache.items() if not keep(st.partition)]:
            del self.cache[user_id]
            self.dirty_table.discard(user_id)
            self.dirty_redis.discard(user_id)
            self.dirty_topic.discard(user_id)
