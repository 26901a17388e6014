"""The Redis profile writer against the real server: idempotent, never backwards."""

import asyncio

import pytest

from stream.adapters.redis_store import ProfileWriter, read_profiles
from stream.serde import SchemaRegistry
from stream.users import Flushed
from tests.contract.test_schemas import REALISTIC

pytestmark = pytest.mark.integration
REG = SchemaRegistry.default()


def flushed(user, version):
    p = dict(REALISTIC["UserProfile"], user_id=user, version=version)
    return Flushed(user, 0, version, REG.encode("UserProfile", p))


def test_writes_are_version_checked_in_one_call(stack, unique):
    users = [f"{unique}-{i}" for i in range(600)]

    async def go():
        w = ProfileWriter(stack.redis_url, prefix=f"t{unique}:")
        try:
            first = await w.write([flushed(u, 5) for u in users])
            again = await w.write([flushed(u, 5) for u in users])          # a replay: nothing newer
            older = await w.write([flushed(u, 3) for u in users[:10]])     # never backwards
            newer = await w.write([flushed(u, 6) for u in users[:10]] + [flushed(users[10], 4)])
            return first[0], again[0], older[0], newer[0]
        finally:
            await w.close()
    assert asyncio.run(go()) == (600, 0, 0, 10)
    got = read_profiles(stack.redis_url, users[:12], REG, prefix=f"t{unique}:")
    assert [got[u]["version"] for u in users[:12]] == [6] * 10 + [5, 5]
    assert got[users[0]]["counts"] == REALISTIC["UserProfile"]["counts"]
