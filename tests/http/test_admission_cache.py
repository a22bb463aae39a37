"""The admission cache in proxy mode: a caller admitted once per (credential, route), never past a revocation.

Memory store (revocations answered synchronously) and Redis with the
revocation cache (answered while the pub/sub feed vouches); Redis without it
has no admission cache. Decision mode's use of the same cache is in
tests/http/test_decision.py.
"""
from __future__ import annotations

import asyncio
import time

from gateway.app import create_app
from gateway.auth.admission_cache import AdmissionCache
from gateway.runtime import GATEWAY
from tests.conftest import bearer, login


def _cache(client) -> AdmissionCache:
    cache = client.server.app[GATEWAY].admissions
    assert cache is not None
    return cache


async def test_a_second_request_is_a_hit_and_a_logout_ends_it_at_once(make_gateway):
    client = await make_gateway()
    cache = _cache(client)
    pair = await login(client, "bob")
    for _ in range(3):
        resp = await client.get("/api/x", headers=bearer(pair["access"]))
        assert resp.status == 200 and (await resp.json())["headers"]["X-User-Id"] == "bob"
    assert (cache.hits, cache.misses, len(cache)) == (2, 1, 1)
    assert (await client.post("/auth/logout", json={"refresh": pair["refresh"]}, headers=bearer(pair["access"]))).status == 200
    refused = await client.get("/api/x", headers=bearer(pair["access"]))
    assert refused.status == 401 and (await refused.json())["code"] == "token_revoked"


async def test_a_hit_injects_the_claim_headers_kept_with_the_caller(make_gateway):
    """The claim headers are made once per admission (``pipeline.admit`` on a miss) and kept with the caller: a hit
    hands out the very pair the miss made, and the upstream gets the same headers from both."""
    client = await make_gateway()
    cache = _cache(client)
    token = (await login(client, "alice"))["access"]
    seen = []
    for _ in range(2):
        resp = await client.get("/api/x", headers=bearer(token))
        headers = (await resp.json())["headers"]
        seen.append({k: v for k, v in headers.items() if k.startswith(("X-User-", "X-Auth-"))})
    assert seen[0] == seen[1] and seen[0]["X-User-Id"] == "alice"
    key, = cache._entries
    (claims, injected), _route = cache._entries.get(key, time.monotonic())
    assert claims["sub"] == "alice" and dict(injected) == seen[0]


async def test_an_entry_is_per_route_and_requirements_still_refuse(make_gateway):
    client = await make_gateway()
    token = (await login(client, "bob"))["access"]  # bob is no admin
    assert (await client.get("/api/x", headers=bearer(token))).status == 200
    for _ in range(2):  # the /api entry never admits to /admin
        assert (await client.get("/admin/x", headers=bearer(token))).status == 403
    assert len(_cache(client)) == 1


async def test_a_refresh_token_reuse_ends_the_entries_of_the_family(make_gateway):
    client = await make_gateway(tokens={"refresh_grace": "0s"})
    pair = await login(client, "alice")
    successor = await (await client.post("/auth/token/refresh", json={"refresh": pair["refresh"]})).json()
    for token in (pair["access"], successor["access"]):
        assert (await client.get("/api/x", headers=bearer(token))).status == 200  # both admitted, both cached
    reused = await client.post("/auth/token/refresh", json={"refresh": pair["refresh"]})
    assert reused.status == 401 and (await reused.json())["code"] == "token_reused"
    for token in (pair["access"], successor["access"]):
        resp = await client.get("/api/x", headers=bearer(token))
        assert resp.status == 401 and (await resp.json())["code"] == "token_revoked"


async def test_a_reload_empties_it(make_gateway, make_config):
    client = await make_gateway()
    token = (await login(client))["access"]
    assert (await client.get("/api/x", headers=bearer(token))).status == 200
    gateway = client.server.app[GATEWAY]
    gateway.swap(type(gateway.runtime).build(make_config(), gateway.store, None, events=gateway.metrics))
    assert len(_cache(client)) == 0


async def test_redis_without_the_revocation_cache_has_none(aiohttp_client, make_config, redis_url):
    config = make_config(store={"backend": "redis", "url": redis_url, "prefix": "adm-none:"})
    client = await aiohttp_client(create_app(config))
    assert client.server.app[GATEWAY].admissions is None


async def test_with_redis_another_instances_logout_ends_the_entry(aiohttp_client, make_config, redis_url):
    config = make_config(store={"backend": "redis", "url": redis_url, "prefix": "adm-two:", "revocation_cache": "60s"})
    a, b = await aiohttp_client(create_app(config)), await aiohttp_client(create_app(config))
    cache = _cache(a)
    deadline = time.monotonic() + 10
    while not cache.revocations.healthy:  # type: ignore[attr-defined]
        assert time.monotonic() < deadline, "revocation cache never subscribed"
        await asyncio.sleep(0.05)
    pair = await login(b)
    for _ in range(2):
        assert (await a.get("/api/x", headers=bearer(pair["access"]))).status == 200
    assert cache.hits == 1
    assert (await b.post("/auth/logout", json={"refresh": pair["refresh"]}, headers=bearer(pair["access"]))).status == 200
    while (status := (await a.get("/api/x", headers=bearer(pair["access"]))).status) == 200:
        assert time.monotonic() < deadline + 10, "the other instance's logout never ended the cached admission"
        await asyncio.sleep(0.05)
    assert status == 401


async def test_off_with_zero(make_gateway):
    client = await make_gateway(limits={"admission_cache": 0})
    token = (await login(client))["access"]
    for _ in range(2):
        assert (await client.get("/api/x", headers=bearer(token))).status == 200
    assert client.server.app[GATEWAY].admissions is None  # nothing built, nothing looked up per request
