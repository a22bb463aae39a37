"""Websockets end with their token: expiry, logout and family revocation (on any instance), route bounds."""
from __future__ import annotations

import asyncio
import copy
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import WSMsgType
from aiohttp.test_utils import TestClient

from gateway.app import create_app
from gateway.config import parse_config
from tests.conftest import base_config, bearer, login
from tests.support.websockets import ws_routes

BOUND = 10.0  # seconds: no close below takes longer unless the feature is broken


async def make(aiohttp_client, url: str, users_file: Path, tmp_path: Path, *, session: dict[str, Any] | None = None,
               **overrides: Any) -> TestClient:
    routes = ws_routes(url)
    if session is not None:
        routes[0] = {**routes[0], "websocket_session": session}
    raw = base_config(url, users_file, routes=routes, **overrides)
    return await aiohttp_client(create_app(parse_config(copy.deepcopy(raw), tmp_path)))


async def closed_with(ws: aiohttp.ClientWebSocketResponse, timeout: float = BOUND) -> tuple[int, str]:
    """Read until the gateway closes the socket; echoes on the way are skipped."""
    deadline = time.monotonic() + timeout
    while True:
        msg = await ws.receive(timeout=max(0.1, deadline - time.monotonic()))
        if msg.type is WSMsgType.CLOSE:
            return msg.data, msg.extra
        if msg.type in (WSMsgType.CLOSED, WSMsgType.ERROR):
            return ws.close_code or 0, ""


async def echo_ok(ws: aiohttp.ClientWebSocketResponse) -> None:
    await ws.send_str("hello")
    assert await ws.receive_str(timeout=BOUND) == "hello"


async def test_socket_closes_when_its_token_expires(ws_upstream, aiohttp_client, users_file, tmp_path):
    upstream, url = ws_upstream
    gateway = await make(aiohttp_client, url, users_file, tmp_path, tokens={"access_lifetime": "2s"})
    token = (await login(gateway))["access"]
    ws = await gateway.ws_connect("/ws", headers=bearer(token))
    await echo_ok(ws)
    opened = time.monotonic()
    assert await closed_with(ws) == (4001, "token expired")
    assert time.monotonic() - opened < BOUND
    code, reason = await asyncio.wait_for(upstream.closes.get(), BOUND)
    assert (code, reason) == (4001, "token expired")


async def test_logout_closes_the_sessions_sockets_and_no_others(ws_upstream, aiohttp_client, users_file, tmp_path):
    _, url = ws_upstream
    gateway = await make(aiohttp_client, url, users_file, tmp_path)
    alice, bob = await login(gateway, "alice"), await login(gateway, "bob")
    ws_alice = await gateway.ws_connect("/ws", headers=bearer(alice["access"]))
    ws_bob = await gateway.ws_connect("/ws", headers=bearer(bob["access"]))
    await echo_ok(ws_alice)
    resp = await gateway.post("/auth/logout", headers=bearer(alice["access"]))
    assert resp.status == 200
    assert await closed_with(ws_alice) == (4004, "token revoked")
    await echo_ok(ws_bob)  # bob's session is not touched
    await ws_bob.close()


async def test_revocation_on_another_instance_closes_the_socket(ws_upstream, aiohttp_client, users_file, tmp_path, redis_url):
    _, url = ws_upstream
    store = {"backend": "redis", "url": redis_url}
    first = await make(aiohttp_client, url, users_file, tmp_path, store=store)
    second = await make(aiohttp_client, url, users_file, tmp_path, store=store)
    pair = await login(first)
    ws = await first.ws_connect("/ws", headers=bearer(pair["access"]))
    await echo_ok(ws)
    await asyncio.sleep(0.5)  # the first instance's subscription is up
    resp = await second.post("/auth/logout", json={"refresh": pair["refresh"]})  # the family, on the other instance
    assert resp.status == 200
    assert await closed_with(ws) == (4004, "token revoked")


async def test_route_max_lifetime_and_idle_timeout(ws_upstream, aiohttp_client, users_file, tmp_path):
    _, url = ws_upstream
    lifetime = await make(aiohttp_client, url, users_file, tmp_path, session={"max_lifetime": "1500ms"})
    token = (await login(lifetime))["access"]
    ws = await lifetime.ws_connect("/ws", headers=bearer(token))
    await echo_ok(ws)
    assert await closed_with(ws) == (4002, "max lifetime")

    idle = await make(aiohttp_client, url, users_file, tmp_path, session={"idle_timeout": "1500ms"})
    token = (await login(idle))["access"]
    ws = await idle.ws_connect("/ws", headers=bearer(token))
    for _ in range(6):  # traffic every 0.5 s keeps it open past the idle timeout
        await asyncio.sleep(0.5)
        await echo_ok(ws)
    assert await closed_with(ws) == (4003, "idle timeout")


async def test_websockets_are_capped(ws_upstream, aiohttp_client, users_file, tmp_path):
    _, url = ws_upstream
    gateway = await make(aiohttp_client, url, users_file, tmp_path, limits={"max_websockets": 1})
    token = (await login(gateway))["access"]
    ws = await gateway.ws_connect("/ws", headers=bearer(token))
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await gateway.ws_connect("/ws", headers=bearer(token))
    assert refused.value.status == 503
    await echo_ok(ws)
    await ws.close()
    await asyncio.sleep(0.2)
    again = await gateway.ws_connect("/ws", headers=bearer(token))  # the slot is free again
    await echo_ok(again)
    await again.close()


def test_websocket_session_needs_a_websocket_route(users_file, tmp_path):
    from gateway.config import ConfigError

    raw = base_config("http://127.0.0.1:1", users_file,
                      routes=[{"prefix": "/x", "upstream": "http://127.0.0.1:1", "websocket_session": {"idle_timeout": "1m"}}])
    with pytest.raises(ConfigError) as caught:
        parse_config(raw, tmp_path)
    assert any("websocket_session: needs websocket: true" in p for p in caught.value.problems), caught.value.problems
