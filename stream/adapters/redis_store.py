"""Profiles in Redis: one hash per user, whole-profile writes, idempotent.

The hash ``<prefix>profile:<user_id>`` holds ``version`` and ``avro`` (the UserProfile
record in its Avro encoding, ``schemas/UserProfile.avsc``: the same bytes as on
``profiles.v1``). A write carries the profile's version and is applied only if it is
newer than what Redis holds (a Lua script), so replays, retries and a brief overlap of
two workers during a rebalance never move a profile backwards.
"""

from __future__ import annotations

import time
from typing import Sequence

import redis
import redis.asyncio as aredis

from stream.errors import StoreError
from stream.serde import SchemaRegistry
from stream.users import Flushed

#: KEYS[1] = profile hash; ARGV = version, avro bytes
WRITE_IF_NEWER = """
local v = redis.call('HGET', KEYS[1], 'version')
if v and tonumber(v) >= tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'version', ARGV[1], 'avro', ARGV[2])
return 1
"""


def profile_key(prefix: str, user_id: str) -> str:
    return f"{prefix}profile:{user_id}"


class ProfileWriter:
    """Async, pipelined, version-checked profile writes."""

    def __init__(self, url: str, prefix: str = "stream:", timeout: float = 5.0) -> None:
        self.client = aredis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
        self.prefix = prefix
        self._script = self.client.register_script(WRITE_IF_NEWER)

    async def write(self, profiles: Sequence[Flushed]) -> tuple[int, float]:
        """Write profiles in one pipeline; returns (how many were newer, seconds taken)."""
        if not profiles:
            return 0, 0.0
        t0 = time.perf_counter()
        pipe = self.client.pipeline(transaction=False)
        for f in profiles:
            await self._script(keys=[profile_key(self.prefix, f.user_id)], args=[f.version, f.profile_bytes],
                               client=pipe)
        try:
            results = await pipe.execute()
        except (redis.RedisError, OSError) as exc:
            raise StoreError(f"Redis write of {len(profiles)} profiles failed: {exc}") from exc
        return sum(1 for r in results if r == 1), time.perf_counter() - t0

    async def close(self) -> None:
        await self.client.aclose()


def read_profiles(url: str, user_ids: Sequence[str], registry: SchemaRegistry, prefix: str = "stream:",
                  timeout: float = 5.0) -> dict[str, dict]:
    """Profiles of some users from Redis (sync; for the CLI, tests and readers)."""
    client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
    try:
        pipe = client.pipeline(transaction=False)
        for u in user_ids:
            pipe.hget(profile_key(prefix, u), "avro")
        blobs = pipe.execute()
    except (redis.RedisError, OSError) as exc:
        raise StoreError(f"Redis at {url} did not answer: {exc}") from exc
    finally:
        client.close()
    return {u: registry.decode("UserProfile", b) for u, b in zip(user_ids, blobs) if b is not None}


def read_profile(url: str, user_id: str, registry: SchemaRegistry, prefix: str = "stream:") -> dict | None:
    return read_profiles(url, [user_id], registry, prefix).get(user_id)
