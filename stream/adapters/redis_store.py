"""Profiles in Redis: one hash per user, whole-profile writes, idempotent.

A write carries the profile's version and is applied only if it is newer than what
Redis holds (a Lua script), so replays, retries and a brief overlap of two workers
during a rebalance never move a profile backwards.
"""

from __future__ import annotations

import json
import time
from typing import Sequence

import redis
import redis.asyncio as aredis

from stream.errors import StoreError

#: KEYS[1] = profile hash; ARGV = version, then field/value pairs
WRITE_IF_NEWER = """
local v = redis.call('HGET', KEYS[1], 'version')
if v and tonumber(v) >= tonumber(ARGV[1]) then return 0 end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
return 1
"""

JSON_FIELDS = ("counts", "affinity", "last_items")


def profile_key(prefix: str, user_id: str) -> str:
    return f"{prefix}profile:{user_id}"


def to_fields(profile: dict) -> list:
    """Flat field/value list for HSET: scalars as text, maps and lists as JSON."""
    out: list = []
    for k, v in profile.items():
        out.append(k)
        out.append(json.dumps(v, separators=(",", ":")) if k in JSON_FIELDS else str(v))
    return out


def from_fields(fields: dict[bytes | str, bytes | str]) -> dict:
    """Inverse of :func:`to_fields`, typed as the UserProfile schema."""
    text = {(k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
            for k, v in fields.items()}
    out: dict = {}
    for k, v in text.items():
        if k in JSON_FIELDS:
            out[k] = json.loads(v)
        elif k in ("user_id",):
            out[k] = v
        elif k == "spend":
            out[k] = float(v)
        else:
            out[k] = int(v)
    return out


class ProfileWriter:
    """Async, pipelined, version-checked profile writes."""

    def __init__(self, url: str, prefix: str = "stream:", timeout: float = 5.0) -> None:
        self.client = aredis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
        self.prefix = prefix
        self._script = self.client.register_script(WRITE_IF_NEWER)

    async def write(self, profiles: Sequence[dict]) -> tuple[int, float]:
        """Write profiles in one pipeline; returns (how many were newer, seconds taken)."""
        t0 = time.perf_counter()
        if not profiles:
            return 0, 0.0
        pipe = self.client.pipeline(transaction=False)
        for p in profiles:
            await self._script(keys=[profile_key(self.prefix, p["user_id"])],
                               args=[p["version"], *to_fields(p)], client=pipe)
        try:
            results = await pipe.execute()
        except redis.NoScriptError:  # server restarted: load the script and retry once
            await self._script.client.script_load(WRITE_IF_NEWER)
            return await self.write(profiles)
        except (redis.RedisError, OSError) as exc:
            raise StoreError(f"Redis write of {len(profiles)} profiles failed: {exc}") from exc
        return sum(1 for r in results if r == 1), time.perf_counter() - t0

    async def close(self) -> None:
        await self.client.aclose()


def read_profile(url: str, user_id: str, prefix: str = "stream:", timeout: float = 5.0) -> dict | None:
    """One profile from Redis (sync; for the CLI and tests)."""
    client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
    try:
        fields = client.hgetall(profile_key(prefix, user_id))
    except (redis.RedisError, OSError) as exc:
        raise StoreError(f"Redis at {url} did not answer: {exc}") from exc
    finally:
        client.close()
    return from_fields(fields) if fields else None
