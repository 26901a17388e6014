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


def test_a_new_incarnation_of_the_clicks_topic_overwrites_higher_versions_of_the_old_one(stack, unique):
    users = [f"{unique}-{i}" for i in range(20)]

    async def go():
        old = ProfileWriter(stack.redis_url, prefix=f"i{unique}:", incarnation="topic-A")
        new = ProfileWriter(stack.redis_url, prefix=f"i{unique}:", incarnation="topic-B")
        try:
            first = await old.write([flushed(u, 50) for u in users])
            # the broker lost its data: the new topic's profiles start again at low versions
            after = await new.write([flushed(u, 2) for u in users[:15]])
            stale = await new.write([flushed(u, 1) for u in users[:15]])    # within B: never backwards
            late = await old.write([flushed(u, 60) for u in users[:5]])    # A again (a straggler): never
            unknown = ProfileWriter(stack.redis_url, prefix=f"i{unique}:")  # no topic id: versions only
            try:
                lower = await unknown.write([flushed(u, 1) for u in users[:3]])
                higher = await unknown.write([flushed(u, 3) for u in users[:3]])
            finally:
                await unknown.close()
            return first[0], after[0], stale[0], late[0], lower[0], higher[0]
        finally:
            await old.close()
            await new.close()
    assert asyncio.run(go()) == (20, 15, 0, 0, 0, 3)
    got = read_profiles(stack.redis_url, users, REG, prefix=f"i{unique}:")
    assert [got[u]["version"] for u in users] == [3] * 3 + [2] * 12 + [50] * 5


def test_the_broker_gives_each_topic_incarnation_its_own_id(stack, topics, unique, tmp_path):
    from stream.adapters.kafka import topic_id
    from tests.integration.pipeline import fresh_stack
    here = topic_id(stack.bootstrap, "clicks.v1")
    assert here and topic_id(stack.bootstrap, "clicks.v1") == here  # stable while the topic lives
    with fresh_stack(tmp_path) as env:  # another broker, the same topology: another incarnation
        other = topic_id(env["STREAM_KAFKA_BOOTSTRAP_SERVERS"], "clicks.v1")
    assert other and other != here
    assert topic_id(stack.bootstrap, f"no-such-topic-{unique}") is None


def test_a_model_signed_with_another_key_is_refused_and_a_release_restores_only_with_this_key(stack, unique):
    from stream.adapters.registry import ModelIntegrityError, ModelRegistry
    prefix = f"m{unique}:"
    ours = ModelRegistry(stack.redis_url, "k" * 40, REG, prefix)
    theirs = ModelRegistry(stack.redis_url, "stream-dev-registry-key", REG, prefix)
    rec = theirs.release("reco", {"w": [1.0, 2.0]}, family="f", parent=None, examples=0, metrics={})
    with pytest.raises(ModelIntegrityError, match="tampered or wrong registry key"):
        ours.load(rec)  # a blob in Redis signed with the public development key does not run here
    good = ours.release("reco", {"w": [3.0]}, family="f", parent=None, examples=5, metrics={}, min_version=10)
    assert good["version"] == 10 and ours.load(good) == {"w": [3.0]}
    carried = {**good, "blob": ours.blob(good)}
    ours.client.delete(*ours.client.keys(prefix + "*"))  # the registry lost its data (this test's keys only)
    with pytest.raises(ModelIntegrityError, match="not signed with this registry key"):
        theirs.restore(carried)
    assert ours.restore(carried)["version"] == 10 and ours.latest("reco")["version"] == 10
    assert ours.release("reco", {}, family="f", parent=10, examples=6, metrics={})["version"] == 11
