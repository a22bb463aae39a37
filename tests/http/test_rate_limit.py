"""routes[].rate_limit: GCRA per key, shared across instances through Redis, IETF RateLimit headers."""
from __future__ import annotations

from typing import Any

import pytest

from gateway.app import create_app
from gateway.config import ConfigError, parse_config
from gateway.stores.redis import RedisStore
from tests.conftest import base_config, bearer, login
from tests.support.clock import elapse, memory_store


def limited_routes(upstream: str, **limit: Any) -> list[dict[str, Any]]:
    return [
        {"name": "api", "prefix": "/api", "upstream": upstream, "headers": {"X-User-Id": "sub"},
         "rate_limit": {"requests": 3, "per": "3s", **limit}},
        {"name": "public", "prefix": "/public", "upstream": upstream, "auth": "none",
         "rate_limit": {"requests": 2, "per": "10s", "key": "ip"}},
        {"name": "free", "prefix": "/free", "upstream": upstream, "auth": "none"},
    ]


async def statuses(client, path: str, n: int, **kwargs: Any) -> list[int]:
    return [(await client.get(path, **kwargs)).status for _ in range(n)]


async def test_limit_per_subject_with_headers(make_gateway, upstream):
    store = memory_store()
    gateway = await make_gateway(store=store, routes=limited_routes(upstream))
    alice, bob = (await login(gateway, "alice"))["access"], (await login(gateway, "bob"))["access"]
    first = await gateway.get("/api/x", headers=bearer(alice))
    assert first.status == 200
    assert first.headers["RateLimit-Policy"] == '"api";q=3;w=3'
    assert first.headers["RateLimit"].startswith('"api";r=2;t=')
    assert await statuses(gateway, "/api/x", 2, headers=bearer(alice)) == [200, 200]
    refused = await gateway.get("/api/x", headers=bearer(alice))
    assert refused.status == 429 and 1 <= int(refused.headers["Retry-After"]) <= 2
    assert await refused.json() == {"detail": "Too many requests; slow down", "code": "rate_limited"}
    assert refused.headers["RateLimit"].startswith('"api";r=0;')
    assert await statuses(gateway, "/api/x", 3, headers=bearer(bob)) == [200] * 3  # bob has his own
    await elapse(store, 1.2)  # one interval (1 s) later, one more passes
    assert await statuses(gateway, "/api/x", 2, headers=bearer(alice)) == [200, 429]
    assert await statuses(gateway, "/free/x", 5) == [200] * 5  # routes without a limit are untouched


async def test_burst_and_other_keys(make_gateway, upstream):
    routes = limited_routes(upstream, burst=1, key="header:X-Api-Key")
    gateway = await make_gateway(routes=routes)
    token = (await login(gateway, "alice"))["access"]
    assert await statuses(gateway, "/api/x", 2, headers={**bearer(token), "X-Api-Key": "k1"}) == [200, 429]
    assert await statuses(gateway, "/api/x", 1, headers={**bearer(token), "X-Api-Key": "k2"}) == [200]
    assert await statuses(gateway, "/public/x", 3) == [200, 200, 429]  # key: ip on a route without auth
    tenant = await make_gateway(routes=limited_routes(upstream, key="claim:tenant"))
    alice, bob = (await login(tenant, "alice"))["access"], (await login(tenant, "bob"))["access"]
    assert await statuses(tenant, "/api/x", 2, headers=bearer(alice)) == [200, 200]
    assert await statuses(tenant, "/api/x", 2, headers=bearer(bob)) == [200, 429]  # one tenant, one limit


async def test_limit_is_shared_across_instances(make_gateway, upstream, redis_url):
    routes = limited_routes(upstream)
    first = await make_gateway(RedisStore(redis_url), routes=routes)
    second = await make_gateway(RedisStore(redis_url), routes=routes)
    token = (await login(first, "alice"))["access"]
    assert await statuses(first, "/api/x", 2, headers=bearer(token)) == [200, 200]
    assert await statuses(second, "/api/x", 2, headers=bearer(token)) == [200, 429]


@pytest.mark.parametrize("mode,expected", [("fail_closed", 503), ("fail_open", 200)])
async def test_store_outage_follows_the_failure_mode(aiohttp_client, make_config, upstream, redis_server, redis_url,
                                                    mode, expected):
    config = make_config(routes=limited_routes(upstream),
                         store={"backend": "redis", "url": redis_url, "timeout": "0.5s", "failure_mode": mode})
    gateway = await aiohttp_client(create_app(config))
    redis_server.stop()
    try:
        assert (await gateway.get("/public/x")).status == expected
    finally:
        redis_server.start()


def test_rate_limit_config_is_validated(upstream, users_file, tmp_path):
    for bad, message in [({"requests": 0, "per": "1s"}, "requests"), ({"requests": 1, "per": "0s"}, "per: must be positive"),
                         ({"requests": 1, "per": "1s", "key": "cookie:x"}, "key: sub, ip, header:NAME or claim:NAME")]:
        raw = base_config(upstream, users_file, routes=[{"prefix": "/a", "upstream": upstream, "rate_limit": bad}])
        with pytest.raises(ConfigError) as caught:
            parse_config(raw, tmp_path)
        assert any(message in p for p in caught.value.problems), caught.value.problems


async def test_both_stores_decide_alike(store):
    decisions = [await store.rate_limit("k", 10.0, 3) for _ in range(4)]
    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert [d.remaining for d in decisions] == [2, 1, 0, 0]
    assert 9 <= decisions[3].retry_after <= 10 and 29 <= decisions[3].reset_after <= 30
    assert (await store.rate_limit("other", 10.0, 3)).allowed  # keys are independent
