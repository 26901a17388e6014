"""Profiles in Redis: one hash per user, whole-profile writes, idempotent.

The hash ``<prefix>profile:<user_id>`` holds ``version``, ``avro`` (the UserProfile
record in its Avro encoding, ``schemas/UserProfile.avsc``: the same bytes as on
``profiles.v1``) and ``incarnation`` (the id of the clicks topic the profile was computed
from). A write carries the profile's version and is applied only if it is newer than what
Redis holds (a Lua script), so replays, retries and a brief overlap of two workers during a
rebalance never move a profile backwards. A write from a later incarnation applies whatever
its version (and one from an earlier incarnation never does): after a broker lost its data,
the new topic's profiles start again at version 1, and the old incarnation's higher versions
must not hide them (users not seen since keep their last profile, tagged with the old
incarnation).
"""

from __future__ import annotations

import time
import uuid
from typing import Sequence

import redis
import redis.asyncio as aredis

from stream.errors import StoreError
from stream.serde import SchemaRegistry
from stream.users import Flushed

#: KEYS = profile hashes, then the incarnations hash; ARGV = incarnation, version_1, avro_1, ...;
#: returns how many were written. Incarnations are numbered in the order Redis first sees them:
#: a write of a later incarnation than the one held applies whatever its version, an earlier
#: one never does, the same one only if newer. An empty incarnation (a broker that does not
#: give topic ids) compares versions only.
WRITE_IF_NEWER = """
local reg = KEYS[#KEYS]
local function seq(id)
  local s = redis.call('HGET', reg, id)
  if not s then
    s = redis.call('HINCRBY', reg, '__next', 1)
    redis.call('HSET', reg, id, s)
  end
  return tonumber(s)
end
local inc = ARGV[1]
local mine = nil
if inc ~= '' then mine = seq(inc) end
local written = 0
for i = 1, #KEYS - 1 do
  local held = redis.call('HMGET', KEYS[i], 'version', 'incarnation')
  local v, held_inc = held[1], held[2] or ''
  local new = ARGV[2 * i]
  local apply
  if not v then
    apply = true
  elseif mine == nil or held_inc == '' or held_inc == inc then
    apply = tonumber(v) < tonumber(new)
  else
    apply = mine > seq(held_inc)
  end
  if apply then
    redis.call('HSET', KEYS[i], 'version', new, 'avro', ARGV[2 * i + 1], 'incarnation', inc)
    written = written + 1
  end
end
return written
"""


#: KEYS = [generation key]; ARGV = [a new token]: the token set once per Redis lifetime
GENERATION = """
redis.call('SET', KEYS[1], ARGV[1], 'NX')
return redis.call('GET', KEYS[1])
"""


def profile_key(prefix: str, user_id: str) -> str:
    return f"{prefix}profile:{user_id}"


class ProfileWriter:
    """Async, version-checked profile writes: one Lua call per chunk."""

    def __init__(self, url: str, prefix: str = "stream:", timeout: float = 5.0, incarnation: str = "") -> None:
        self.client = aredis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
        self.prefix, self.incarnation = prefix, incarnation
        self._script = self.client.register_script(WRITE_IF_NEWER)
        self._generation = self.client.register_script(GENERATION)

    async def generation(self) -> str:
        """The token of this Redis's data: set by the first writer, new after Redis lost its data."""
        try:
            value = await self._generation(keys=[f"{self.prefix}generation"], args=[uuid.uuid4().hex])
        except (redis.RedisError, OSError) as exc:
            raise StoreError(f"Redis did not answer: {exc}") from exc
        return value.decode() if isinstance(value, bytes) else str(value)

    async def write(self, profiles: Sequence[Flushed]) -> tuple[int, float]:
        """Write profiles in one call; returns (how many were newer, seconds taken)."""
        if not profiles:
            return 0, 0.0
        t0 = time.perf_counter()
        keys = [profile_key(self.prefix, f.user_id) for f in profiles] + [f"{self.prefix}incarnations"]
        args: list = [self.incarnation]
        for f in profiles:
            args.append(f.version)
            args.append(f.profile_bytes)
        try:
            written = await self._script(keys=keys, args=args)
        except (redis.RedisError, OSError) as exc:
            raise StoreError(f"Redis write of {len(profiles)} profiles failed: {exc}") from exc
        return int(written), time.perf_counter() - t0

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
