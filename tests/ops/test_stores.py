"""One contract for every store: the memory store and Redis (a real server) must behave alike."""
from __future__ import annotations

import asyncio

import pytest

from gateway.stores import RotationOutcome, Store
from gateway.stores.redis import RedisStore
from tests.conftest import RedisServer, free_port
from tests.support.clock import elapse


async def test_rotation_spends_the_old_token(store: Store):
    await store.start_family("f1", "j1", ttl=60)
    rotation = await store.rotate("f1", "j1", "j2", "pair-2", ttl=60, grace=10)
    assert rotation.outcome is RotationOutcome.ROTATED
    assert await store.is_current("f1", "j2") is RotationOutcome.ROTATED
    assert await store.is_current("f1", "j1") is RotationOutcome.REUSED


async def test_repeat_within_grace_returns_the_same_successor(store: Store):
    await store.start_family("f1", "j1", ttl=60)
    await store.rotate("f1", "j1", "j2", "pair-2", ttl=60, grace=10)
    again = await store.rotate("f1", "j1", "j3", "pair-3", ttl=60, grace=10)
    assert again.outcome is RotationOutcome.GRACE and again.successor == "pair-2"
    assert await store.is_current("f1", "j2") is RotationOutcome.ROTATED  # the repeat changed nothing


async def test_reuse_after_grace_revokes_the_family(store: Store):
    await store.start_family("f1", "j1", ttl=60)
    await store.rotate("f1", "j1", "j2", "pair-2", ttl=60, grace=0.05)
    await elapse(store, 0.1)
    reuse = await store.rotate("f1", "j1", "j3", "pair-3", ttl=60, grace=0.05)
    assert reuse.outcome is RotationOutcome.REUSED
    assert (await store.rotate("f1", "j2", "j4", "pair-4", ttl=60, grace=1)).outcome is RotationOutcome.REVOKED
    assert await store.is_revoked("f1", "any-access-jti")


async def test_concurrent_rotations_mint_one_successor(store: Store):
    await store.start_family("f1", "j1", ttl=60)
    results = await asyncio.gather(*[store.rotate("f1", "j1", f"n{i}", f"pair-{i}", ttl=60, grace=10) for i in range(20)])
    rotated = [r for r in results if r.outcome is RotationOutcome.ROTATED]
    assert len(rotated) == 1
    winner = results.index(rotated[0])
    assert all(r.successor == f"pair-{winner}" for r in results if r.outcome is RotationOutcome.GRACE)
    assert len(results) - 1 == sum(r.outcome is RotationOutcome.GRACE for r in results)


async def test_unknown_family(store: Store):
    assert (await store.rotate("nope", "j1", "j2", "p", ttl=60, grace=1)).outcome is RotationOutcome.UNKNOWN
    assert await store.is_current("nope", "j1") is RotationOutcome.UNKNOWN
    assert await store.is_revoked("nope", "j1")  # a family the store does not know: lost data, never trusted


async def test_families_are_independent(store: Store):
    await store.start_family("f1", "a1", ttl=60)
    await store.start_family("f2", "b1", ttl=60)
    await store.revoke_family("f1", ttl=60)
    assert await store.is_revoked("f1", "x") and not await store.is_revoked("f2", "x")
    assert (await store.rotate("f2", "b1", "b2", "p", ttl=60, grace=1)).outcome is RotationOutcome.ROTATED


async def test_revoking_an_unknown_family_still_marks_it(store: Store):
    await store.revoke_family("ghost", ttl=60)
    assert await store.is_revoked("ghost", "j")


async def test_deny_list(store: Store):
    await store.start_family("f1", "r1", ttl=60)
    await store.deny("f1", "a1", ttl=60)
    assert await store.is_revoked("f1", "a1")
    assert not await store.is_revoked("f1", "a2")


async def test_records_expire_on_their_own(store: Store):
    await store.start_family("f1", "r1", ttl=0.1)
    await store.start_family("f2", "r1", ttl=60)
    await store.deny("f2", "a1", ttl=0.1)
    await elapse(store, 0.25)
    assert await store.is_current("f1", "r1") is RotationOutcome.UNKNOWN
    assert not await store.is_revoked("f2", "a1")


async def test_ping(store: Store):
    """Answers (None) while the store is up; a Redis store nothing listens for says so (503), see also
    test_redis_down_is_store_unavailable."""
    assert await store.ping() is None
    if isinstance(store, RedisStore):
        from gateway.stores import StoreUnavailable

        nowhere = RedisStore(f"redis://127.0.0.1:{free_port()}", timeout=0.5)
        try:
            with pytest.raises(StoreUnavailable):
                await nowhere.ping()
        finally:
            await nowhere.close()


async def test_every_redis_key_has_a_ttl(redis_server: RedisServer, redis_url: str):
    store = RedisStore(redis_url, prefix="ttl:")
    await store.start_family("f1", "j1", ttl=60)
    await store.rotate("f1", "j1", "j2", "p", ttl=60, grace=10)
    await store.deny("f1", "a1", ttl=60)
    await store.revoke_family("f2", ttl=60)
    await store.describe_session("f1", {"created": "1"}, ttl=60)
    client = redis_server.client()
    keys = client.keys("ttl:*")
    assert len(keys) == 5
    assert all(0 < client.pttl(k) <= 60_000 for k in keys)
    # keys of one family share a hash tag, so the rotation script works on a cluster
    assert {k.split("}")[0] for k in keys if "{f1}" in k} == {"ttl:{f1"}
    await store.close()


async def test_one_time_values_are_taken_exactly_once(store: Store):
    assert await store.put_once("state:a", "record", ttl=60)
    assert not await store.put_once("state:a", "other", ttl=60)  # a replay of the same key
    results = await asyncio.gather(*[store.take("state:a") for _ in range(20)])
    assert results.count("record") == 1 and results.count(None) == 19
    assert await store.take("state:a") is None
    assert await store.put_once("state:a", "again", ttl=60)  # taken keys are free again


async def test_one_time_values_expire(store: Store):
    await store.put_once("code:x", "v", ttl=0.1)
    await elapse(store, 0.25)
    assert await store.take("code:x") is None
    assert await store.put_once("code:x", "v2", ttl=60)


async def test_session_links_and_their_indexes(store: Store):
    await store.link_session("f1", "link-1", ["sid:a", "sub:u"], ttl=60)
    await store.link_session("f2", "link-2", ["sub:u"], ttl=60)
    assert await store.session_link("f1") == "link-1" and await store.session_link("nope") is None
    assert await store.linked_families("sid:a") == ["f1"]
    assert sorted(await store.linked_families("sub:u")) == ["f1", "f2"]
    assert await store.linked_families("sid:none") == []
    await store.link_session("f3", "link-3", ["sid:b"], ttl=0.1)
    await elapse(store, 0.25)
    assert await store.session_link("f3") is None and await store.linked_families("sid:b") == []


async def test_a_users_sessions_and_their_descriptions(store: Store):
    await store.track_session("alice", "f2", ttl=0.1, cap=5)
    await store.track_session("alice", "f1", ttl=60, cap=5)  # the list lives as long as its newest entry (Redis)
    await store.track_session("bob", "f3", ttl=60, cap=5)
    assert sorted(await store.user_sessions("alice")) == ["f1", "f2"]
    assert await store.user_sessions("nobody") == []
    await store.describe_session("f1", {"created": "1", "ip": "192.0.2.1"}, ttl=60)
    await store.describe_session("f1", {"last_refresh": "2", "ip": "192.0.2.1"}, ttl=60)  # merged, not replaced
    assert await store.session_details("f1") == {"created": "1", "ip": "192.0.2.1", "last_refresh": "2"}
    assert await store.session_details("f9") is None
    await store.describe_session("f2", {"created": "1"}, ttl=0.1)
    await elapse(store, 0.25)
    assert await store.user_sessions("alice") == ["f1"]  # f2 expired from the list and its description
    assert await store.session_details("f2") is None


async def test_oidc_keys_have_ttls_and_hold_no_raw_key(redis_server: RedisServer, redis_url: str):
    store = RedisStore(redis_url, prefix="oidc:")
    await store.put_once("oidc:state:secret-state", "r", ttl=60)
    await store.link_session("f1", "l", ["oidc:sid:corp:s1"], ttl=60)
    await store.link_session("f2", "l", ["oidc:sid:corp:s1"], ttl=30)  # the index keeps the longer TTL
    client = redis_server.client()
    keys = client.keys("oidc:*")
    assert len(keys) == 4 and all(0 < client.pttl(k) <= 60_000 for k in keys)
    assert not any("secret-state" in k or "s1" in k for k in keys)
    index = next(k for k in keys if k.startswith("oidc:idx:"))
    assert client.pttl(index) > 30_000
    await store.close()


async def test_redis_down_is_store_unavailable(redis_server: RedisServer, redis_url: str):
    from gateway.stores import StoreUnavailable

    store = RedisStore(redis_url, timeout=0.5)
    await store.ping()
    redis_server.stop()
    try:
        with pytest.raises(StoreUnavailable):
            await store.is_revoked("f", "j")
        with pytest.raises(StoreUnavailable):
            await store.rotate("f", "a", "b", "p", ttl=1, grace=1)
    finally:
        redis_server.start()
    await store.ping()  # recovers by itself once Redis is back
    await store.close()


async def test_two_clients_racing_on_one_token(redis_url: str):
    """Two gateway instances (two connection pools) racing: exactly one mints the successor."""
    a, b = RedisStore(redis_url), RedisStore(redis_url)
    await a.start_family("f", "j1", ttl=60)
    results = await asyncio.gather(*[(a if i % 2 else b).rotate("f", "j1", f"n{i}", f"p{i}", ttl=60, grace=10) for i in range(10)])
    assert sum(r.outcome is RotationOutcome.ROTATED for r in results) == 1
    await a.close()
    await b.close()


async def test_redis_pool_queues_bursts_instead_of_failing(redis_url: str):
    """More concurrent checks than pooled connections wait their turn; none is a 503."""
    from gateway.stores.redis_client import POOL_SIZE

    store = RedisStore(redis_url)
    await store.start_family("f", "r", ttl=60)
    results = await asyncio.gather(*[store.is_revoked("f", f"j{i}") for i in range(POOL_SIZE * 3)])
    assert results == [False] * (POOL_SIZE * 3)
    await store.close()


async def test_no_grace_means_a_repeat_is_reuse_at_once(store: Store):
    """refresh_grace: 0s: no window at all (Redis once kept a 1 ms one, which a fast repeat could hit)."""
    await store.start_family("f1", "j1", ttl=60)
    await store.rotate("f1", "j1", "j2", "pair-2", ttl=60, grace=0)
    assert (await store.rotate("f1", "j1", "j3", "pair-3", ttl=60, grace=0)).outcome is RotationOutcome.REUSED
