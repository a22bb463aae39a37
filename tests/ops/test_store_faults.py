"""Redis down or slow: 503 store_unavailable (fail_closed) or signature-only service (fail_open),
recovery without a restart, and no refresh family corrupted by an outage under load."""
from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import pytest
import redis

from gateway.app import create_app
from gateway.stores.redis import RedisStore
from tests.conftest import PASSWORDS, RedisServer, bearer, login
from tests.support.websockets import handshake_headers, ws_routes

LOAD_TASKS = 6
MAX_ITERATIONS = 3000  # per task: the loop is bounded by count as well as by the stop event


@pytest.fixture
def durable_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server with an append-only file, as in production: its data survives a restart."""
    server = RedisServer(tmp_path, "--appendonly", "yes", "--appendfsync", "always")
    server.start()
    yield server
    server.stop()


@dataclass
class Chain:
    """One client's session under load: its first (soon spent) refresh token and its current pair."""

    first_refresh: str
    refresh: str
    access: str
    answers: Counter[tuple[int, str]] = field(default_factory=Counter)


async def drive(client, chain: Chain, stop: asyncio.Event) -> None:
    """Proxied calls and refreshes in a loop; a 503 is retried with the same token, as a client would."""
    for i in range(MAX_ITERATIONS):
        if stop.is_set():
            return
        if i % 3 == 0:
            resp = await client.post("/auth/token/refresh", json={"refresh": chain.refresh})
        else:
            resp = await client.get("/api/x", headers=bearer(chain.access))
        body = await resp.json() if resp.content_type == "application/json" else {}
        chain.answers[(resp.status, body.get("code", ""))] += 1
        if resp.status == 503:
            assert resp.headers.get("Retry-After") == "1"
        if resp.status == 200 and "refresh" in body:
            chain.refresh, chain.access = body["refresh"], body["access"]
        await asyncio.sleep(0.005)


async def test_outage_under_load_gives_only_503_and_corrupts_no_family(make_gateway, durable_redis):
    gateway = await make_gateway(store=RedisStore(durable_redis.url, timeout=0.5), tokens={"refresh_grace": "2s"})
    chains = []
    for user in ["alice", "bob", "mallory"] * 2:
        pair = await login(gateway, user)
        resp = await gateway.post("/auth/token/refresh", json={"refresh": pair["refresh"]})
        body = await resp.json()
        chains.append(Chain(pair["refresh"], body["refresh"], body["access"]))
    spent_at = time.monotonic()

    stop = asyncio.Event()
    load = [asyncio.create_task(drive(gateway, chain, stop)) for chain in chains[:LOAD_TASKS]]
    await asyncio.sleep(0.5)
    await asyncio.to_thread(durable_redis.stop)
    await asyncio.sleep(1.0)
    await asyncio.to_thread(durable_redis.start)
    await asyncio.sleep(1.0)
    stop.set()
    await asyncio.wait_for(asyncio.gather(*load), 30)

    answers = sum((c.answers for c in chains), Counter())
    assert set(answers) <= {(200, ""), (503, "store_unavailable")}, answers
    assert answers[(503, "store_unavailable")] > 0, "the outage was not observed"
    assert answers[(200, "")] > 0

    # Recovered without a restart, and every family is intact: the chain goes on, reuse is still caught.
    await asyncio.sleep(max(0.0, spent_at + 2.1 - time.monotonic()))  # the first tokens are past their grace
    for chain in chains:
        resp = await gateway.post("/auth/token/refresh", json={"refresh": chain.refresh})
        assert resp.status == 200, await resp.text()
        latest = await resp.json()
        resp = await gateway.get("/api/x", headers=bearer(latest["access"]))
        assert resp.status == 200
        resp = await gateway.post("/auth/token/refresh", json={"refresh": chain.first_refresh})
        assert resp.status == 401 and (await resp.json())["code"] == "token_reused"
        resp = await gateway.post("/auth/token/refresh", json={"refresh": latest["refresh"]})
        assert resp.status == 401 and (await resp.json())["code"] == "token_revoked"


async def test_fail_closed_answers_503_everywhere_a_store_is_needed(make_gateway, redis_server, redis_url):
    gateway = await make_gateway(store=RedisStore(redis_url, timeout=0.5))
    pair = await login(gateway)
    redis_server.stop()
    try:
        for method, path, kwargs in [
            ("GET", "/api/x", {"headers": bearer(pair["access"])}),
            ("GET", "/auth/me", {"headers": bearer(pair["access"])}),
            ("POST", "/auth/token", {"json": {"username": "bob", "password": PASSWORDS["bob"]}}),
            ("POST", "/auth/token/refresh", {"json": {"refresh": pair["refresh"]}}),
            ("POST", "/auth/token/verify", {"json": {"token": pair["access"]}}),
            ("POST", "/auth/logout", {"json": {"refresh": pair["refresh"]}}),
        ]:
            resp = await gateway.request(method, path, **kwargs)
            assert resp.status == 503, path
            assert await resp.json() == {"detail": "The token store is unavailable (ConnectionError)", "code": "store_unavailable"}
        resp = await gateway.get("/public/x")  # a route without auth needs no store
        assert resp.status == 200
    finally:
        redis_server.start()
    fresh = await login(gateway)  # recovered, no restart
    resp = await gateway.get("/api/x", headers=bearer(fresh["access"]))
    assert resp.status == 200
    resp = await gateway.get("/api/x", headers=bearer(pair["access"]))  # its session went with Redis's data
    assert resp.status == 401 and (await resp.json())["code"] == "token_revoked"


async def test_fail_open_serves_on_the_signature_and_says_so(aiohttp_client, make_config, redis_server, redis_url, caplog):
    config = make_config(store={"failure_mode": "fail_open"})
    gateway = await aiohttp_client(create_app(config, store=RedisStore(redis_url, timeout=0.5)))
    pair = await login(gateway)
    redis_server.stop()
    caplog.set_level(logging.WARNING, logger="gateway.store")
    try:
        for _ in range(5):
            resp = await gateway.get("/api/x", headers=bearer(pair["access"]))
            assert resp.status == 200
            assert (await resp.json())["headers"]["X-User-Id"] == "alice"
        resp = await gateway.get("/api/x", headers=bearer(pair["access"] + "x"))  # the signature still counts
        assert resp.status == 401
        resp = await gateway.post("/auth/token/refresh", json={"refresh": pair["refresh"]})
        assert resp.status == 503 and (await resp.json())["code"] == "store_unavailable"
        resp = await gateway.post("/auth/token", json={"username": "bob", "password": PASSWORDS["bob"]})
        assert resp.status == 503
        resp = await gateway.get("/readyz")  # still able to serve: stays in the load balancer
        assert resp.status == 200 and (await resp.json())["status"] == "degraded"
        text = await (await gateway.get("/metrics")).text()
        assert "gateway_store_fail_open_total 5.0" in text
    finally:
        redis_server.start()
    warnings = [r for r in caplog.records if r.name == "gateway.store" and "fail_open" in r.getMessage()]
    assert 1 <= len(warnings) < 5 and warnings[0].levelno == logging.WARNING  # loud, but not a line per request
    assert all(pair["access"] not in r.getMessage() for r in caplog.records)

    # Back to normal: revocation is enforced again.
    fresh = await login(gateway)
    resp = await gateway.post("/auth/logout", headers=bearer(fresh["access"]))
    assert resp.status == 200
    resp = await gateway.get("/api/x", headers=bearer(fresh["access"]))
    assert resp.status == 401 and (await resp.json())["code"] == "token_revoked"


async def test_slow_redis_is_a_503_after_the_store_timeout(make_gateway, redis_server, redis_url):
    gateway = await make_gateway(store=RedisStore(redis_url, timeout=0.3))
    pair = await login(gateway)
    admin = redis.Redis(port=redis_server.port)
    admin.execute_command("CLIENT", "PAUSE", "1500", "ALL")
    try:
        resp = await asyncio.wait_for(gateway.get("/api/x", headers=bearer(pair["access"])), 10)
        assert resp.status == 503 and (await resp.json())["code"] == "store_unavailable"
    finally:
        admin.execute_command("CLIENT", "UNPAUSE")
        admin.close()
    resp = await gateway.get("/api/x", headers=bearer(pair["access"]))
    assert resp.status == 200


@pytest.mark.parametrize("mode,upgraded", [("fail_closed", False), ("fail_open", True)])
async def test_websocket_handshake_follows_the_failure_mode(aiohttp_client, make_config, ws_upstream, redis_server,
                                                            redis_url, mode, upgraded):
    _, url = ws_upstream
    config = make_config(store={"failure_mode": mode}, routes=ws_routes(url))
    gateway = await aiohttp_client(create_app(config, store=RedisStore(redis_url, timeout=0.5)))
    token = (await login(gateway))["access"]
    redis_server.stop()
    try:
        if upgraded:
            ws = await gateway.ws_connect("/ws", headers=bearer(token))
            await ws.send_str("still here")
            assert await ws.receive_str(timeout=10) == "still here"
            await ws.close()
        else:
            resp = await gateway.get("/ws", headers={**bearer(token), **handshake_headers()})
            assert resp.status == 503 and (await resp.json())["code"] == "store_unavailable"
    finally:
        redis_server.start()
