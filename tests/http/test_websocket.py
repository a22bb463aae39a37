"""Websocket routes, end to end: a real client, the real gateway and a real aiohttp websocket upstream."""
from __future__ import annotations

import asyncio
import copy
import json
import os
from pathlib import Path
from typing import Any, Callable

import aiohttp
import pytest
from aiohttp import WSMsgType
from aiohttp.test_utils import TestClient
from multidict import CIMultiDict

from gateway.app import create_app
from gateway.config import ConfigError, parse_config
from tests.conftest import base_config, bearer, login
from tests.support.websockets import handshake_headers, ws_routes

TIMEOUT = 5.0


@pytest.fixture
async def ws_gateway(ws_upstream, aiohttp_client, users_file: Path, tmp_path: Path) -> TestClient:
    """The gateway in front of ``ws_upstream``; listed after it so that it closes first."""
    _, url = ws_upstream
    raw = base_config(url, users_file, routes=ws_routes(url))
    return await aiohttp_client(create_app(parse_config(copy.deepcopy(raw), tmp_path)))


@pytest.fixture
async def token(ws_gateway: TestClient) -> str:
    return (await login(ws_gateway, "alice"))["access"]


async def info(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    await ws.send_str("info")
    return json.loads(await ws.receive_str(timeout=TIMEOUT))


# -- the token, at the handshake -------------------------------------------------


@pytest.mark.parametrize("via", ["header", "query", "subprotocol"])
async def test_token_from_each_source_reaches_upstream_as_identity(ws_gateway, ws_upstream, token, via):
    kwargs: dict[str, Any] = {}
    path = "/ws/feed?room=1"
    if via == "header":
        kwargs["headers"] = bearer(token)
    elif via == "query":
        path = f"/ws/feed?room=1&access_token={token}&b=2"
    else:
        kwargs["protocols"] = [f"bearer.{token}"]
    async with ws_gateway.ws_connect(path, **kwargs) as ws:
        seen = await info(ws)
        if via == "subprotocol":
            assert ws.protocol == f"bearer.{token}"  # echoed to the client only: browsers require a selection
    headers = seen["headers"]
    assert headers["X-User-Id"] == "alice" and headers["X-User-Roles"] == "admin,user"
    assert seen["path"] == "/ws/feed"
    assert seen["query"] == ("room=1&b=2" if via == "query" else "room=1")
    assert "Authorization" not in headers and token not in json.dumps(seen)
    assert "Sec-WebSocket-Protocol" not in headers and seen["protocol"] is None


async def test_token_subprotocol_is_not_offered_upstream_and_a_real_one_is(ws_gateway, ws_upstream, token):
    upstream, _ = ws_upstream
    upstream.select = "chat.v2"
    async with ws_gateway.ws_connect("/ws", protocols=[f"bearer.{token}", "chat.v2"]) as ws:
        seen = await info(ws)
        assert ws.protocol == "chat.v2"
    assert seen["headers"]["Sec-WebSocket-Protocol"] == "chat.v2" and seen["protocol"] == "chat.v2"


@pytest.mark.parametrize(
    "path,headers,code",
    [
        ("/ws", {}, "authentication_required"),
        ("/ws", {"Authorization": "Bearer not.a.jwt"}, "token_not_valid"),
        ("/ws?access_token=not.a.jwt", {}, "token_not_valid"),
        ("/ws", {"Sec-WebSocket-Protocol": "bearer.not.a.jwt"}, "token_not_valid"),
        ("/ws?access_token=", {}, "token_not_valid"),
        ("/wsadmin?access_token=x.y.z", {}, "authentication_required"),  # query tokens are opt-in per route
    ],
)
async def test_missing_or_invalid_token_is_refused_before_the_upgrade(ws_gateway, ws_upstream, path, headers, code):
    upstream, _ = ws_upstream
    resp = await ws_gateway.get(path, headers=handshake_headers(**headers))
    assert resp.status == 401
    assert (await resp.json())["code"] == code
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await ws_gateway.ws_connect(path, headers=headers)
    assert refused.value.status == 401
    assert upstream.handshakes == []


async def test_revoked_token_is_refused(ws_gateway, ws_upstream):
    pair = await login(ws_gateway, "alice")
    assert (await ws_gateway.post("/auth/logout", json={"refresh": pair["refresh"]}, headers=bearer(pair["access"]))).status == 200
    resp = await ws_gateway.get(f"/ws?access_token={pair['access']}", headers=handshake_headers())
    assert resp.status == 401 and (await resp.json())["code"] == "token_revoked"


@pytest.mark.parametrize(
    "path,headers,detail",
    [
        ("/ws?access_token={t}", {"Authorization": "Bearer {t}"}, "one way only"),
        ("/ws?access_token={t}", {"Sec-WebSocket-Protocol": "bearer.{t}"}, "one way only"),
        ("/ws?access_token={t}&access_token={t}", {}, "more than once"),
        ("/ws", {"Sec-WebSocket-Protocol": "bearer.{t}, bearer.{t}"}, "More than one subprotocol"),
    ],
)
async def test_ambiguous_tokens_are_a_400(ws_gateway, ws_upstream, token, path, headers, detail):
    upstream, _ = ws_upstream
    filled = {k: v.format(t=token) for k, v in headers.items()}
    resp = await ws_gateway.get(path.format(t=token), headers=handshake_headers(**filled))
    assert resp.status == 400
    body = await resp.json()
    assert body["code"] == "bad_request" and detail in body["detail"] and token not in body["detail"]
    assert upstream.handshakes == []


async def test_route_policy_applies_at_the_handshake(ws_gateway, ws_upstream):
    bob = (await login(ws_gateway, "bob"))["access"]
    resp = await ws_gateway.get("/wsadmin", headers=handshake_headers(**bearer(bob)))
    assert resp.status == 403 and (await resp.json())["code"] == "permission_denied"
    alice = (await login(ws_gateway, "alice"))["access"]
    async with ws_gateway.ws_connect("/wsadmin", headers=bearer(alice)) as ws:
        assert (await info(ws))["path"] == "/wsadmin"


async def test_spoofed_identity_headers_never_reach_upstream(ws_gateway, ws_upstream, token):
    spoof = {"X-User-Id": "mallory", "X-User-Roles": "admin", "X-Auth-Tenant": "evil", "X-User-Anything": "x"}
    async with ws_gateway.ws_connect(f"/ws?access_token={token}", headers=spoof) as ws:
        headers = (await info(ws))["headers"]
    assert headers["X-User-Id"] == "alice" and headers["X-User-Roles"] == "admin,user"
    assert "X-Auth-Tenant" not in headers and "X-User-Anything" not in headers
    assert headers["X-Forwarded-For"] == "127.0.0.1" and CIMultiDict(headers)["X-Request-Id"]


async def test_optional_and_open_routes(ws_gateway, ws_upstream, token):
    async with ws_gateway.ws_connect("/maybe", headers={"X-User-Id": "mallory"}) as ws:
        assert "X-User-Id" not in (await info(ws))["headers"]
    async with ws_gateway.ws_connect("/maybe", headers=bearer(token)) as ws:
        assert (await info(ws))["headers"]["X-User-Id"] == "alice"
    async with ws_gateway.ws_connect("/open/room?access_token=kept") as ws:  # auth: none reads no token
        seen = await info(ws)
    assert seen["path"] == "/room" and seen["query"] == "access_token=kept"


async def test_forward_authorization_sends_the_token_as_a_header(ws_gateway, ws_upstream, token):
    async with ws_gateway.ws_connect(f"/wsfwd?access_token={token}") as ws:
        seen = await info(ws)
    assert seen["headers"]["Authorization"] == f"Bearer {token}" and seen["query"] == ""


# -- frames -----------------------------------------------------------------------


async def test_text_and_binary_frames_are_echoed(ws_gateway, token):
    big = os.urandom(1024 * 1024)
    async with ws_gateway.ws_connect("/ws", headers=bearer(token)) as ws:
        for text in ["hello", "ünïcödé ✓", ""]:
            await ws.send_str(text)
            assert await ws.receive_str(timeout=TIMEOUT) == text
        for data in [b"\x00\x01\xff", big]:
            await ws.send_bytes(data)
            assert await ws.receive_bytes(timeout=TIMEOUT) == data


async def test_pings_and_pongs_cross_the_gateway(ws_gateway, token):
    async with ws_gateway.ws_connect("/ws", headers=bearer(token), autoping=False) as ws:
        await ws.ping(b"from-client")  # the upstream answers; its pong comes back through the gateway
        msg = await ws.receive(timeout=TIMEOUT)
        assert (msg.type, msg.data) == (WSMsgType.PONG, b"from-client")
        await ws.send_str("ping:from-upstream")
        msg = await ws.receive(timeout=TIMEOUT)
        assert (msg.type, msg.data) == (WSMsgType.PING, b"from-upstream")


# -- closing ----------------------------------------------------------------------


async def test_client_close_code_reaches_upstream(ws_gateway, ws_upstream, token):
    upstream, _ = ws_upstream
    ws = await ws_gateway.ws_connect("/ws", headers=bearer(token))
    await ws.send_str("x")
    await ws.receive_str(timeout=TIMEOUT)
    await ws.close(code=4001, message=b"bye now")
    assert await asyncio.wait_for(upstream.closes.get(), TIMEOUT) == (4001, "bye now")
    assert ws.close_code == 4001  # the gateway answered the close handshake with the same code


async def test_upstream_close_code_reaches_client(ws_gateway, token):
    async with ws_gateway.ws_connect("/ws", headers=bearer(token)) as ws:
        await ws.send_str("close:4002:done here")
        msg = await ws.receive(timeout=TIMEOUT)
        assert (msg.type, msg.data, msg.extra) == (WSMsgType.CLOSE, 4002, "done here")
        assert ws.closed


async def test_upstream_cut_closes_client_with_1014(ws_gateway, token):
    async with ws_gateway.ws_connect("/ws", headers=bearer(token)) as ws:
        await ws.send_str("abort")
        msg = await ws.receive(timeout=TIMEOUT)
        assert (msg.type, msg.data) == (WSMsgType.CLOSE, 1014)


async def test_client_cut_closes_upstream_with_1001(ws_gateway, ws_upstream, token):
    upstream, _ = ws_upstream
    reader, writer = await asyncio.open_connection("127.0.0.1", ws_gateway.port)
    lines = [f"GET /ws?access_token={token} HTTP/1.1", f"Host: 127.0.0.1:{ws_gateway.port}"]
    lines += [f"{k}: {v}" for k, v in handshake_headers().items()]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    status = await asyncio.wait_for(reader.readline(), TIMEOUT)
    assert status.startswith(b"HTTP/1.1 101")
    await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
    writer.transport.abort()  # no close frame, just gone
    code, _ = await asyncio.wait_for(upstream.closes.get(), TIMEOUT)
    assert code == 1001


async def test_shutdown_closes_both_sides_with_1001(ws_gateway, ws_upstream, token):
    upstream, _ = ws_upstream
    ws = await ws_gateway.ws_connect("/ws", headers=bearer(token))
    await ws.send_str("x")
    await ws.receive_str(timeout=TIMEOUT)
    pending = asyncio.create_task(ws.receive(timeout=TIMEOUT))
    await asyncio.wait_for(ws_gateway.server.close(), TIMEOUT * 2)
    msg = await pending
    assert (msg.type, msg.data) == (WSMsgType.CLOSE, 1001)
    code, _ = await asyncio.wait_for(upstream.closes.get(), TIMEOUT)
    assert code == 1001


# -- refusals before the upgrade ---------------------------------------------------


async def test_unreachable_upstream_is_a_502_before_the_upgrade(ws_gateway, token):
    resp = await ws_gateway.get("/down", headers=handshake_headers(**bearer(token)))
    assert resp.status == 502 and (await resp.json())["code"] == "upstream_unavailable"


async def test_silent_upstream_is_a_504_within_the_route_timeout(aiohttp_client, users_file, tmp_path):
    stalled: list[asyncio.StreamWriter] = []

    async def accept_and_stall(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        stalled.append(writer)  # reads nothing, answers nothing

    server = await asyncio.start_server(accept_and_stall, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    route = {"name": "slow", "prefix": "/slow", "upstream": url, "websocket": True, "timeout": "1s"}
    client = await aiohttp_client(create_app(parse_config(base_config(url, users_file, routes=[route]), tmp_path)))
    token = (await login(client, "alice"))["access"]  # this gateway's own session (its store knows the family)
    try:
        resp = await asyncio.wait_for(client.get("/slow", headers=handshake_headers(**bearer(token))), TIMEOUT)
        assert resp.status == 504 and (await resp.json())["code"] == "upstream_timeout"
        assert stalled
    finally:
        for writer in stalled:
            writer.close()
        server.close()


async def test_upstream_refusing_the_upgrade_is_passed_on(ws_gateway, token):
    resp = await ws_gateway.get("/refuse", headers=handshake_headers(**bearer(token)))
    assert resp.status == 403 and (await resp.json())["code"] == "upstream_refused"


async def test_upgrade_on_a_plain_route_is_refused(ws_gateway, ws_upstream, token):
    upstream, _ = ws_upstream
    resp = await ws_gateway.get("/plain", headers=handshake_headers(**bearer(token)))
    assert resp.status == 400 and "websocket" in (await resp.json())["detail"]
    assert upstream.handshakes == []


@pytest.mark.parametrize(
    "method,change,status",
    [
        ("GET", {"Sec-WebSocket-Version": "8"}, 426),
        ("GET", {"Sec-WebSocket-Key": "c2hvcnQ="}, 400),
        ("GET", {"Sec-WebSocket-Key": "not base64 at all!!!!!!!"}, 400),
        ("GET", {"Connection": "keep-alive"}, 400),
        ("POST", {}, 405),
    ],
)
async def test_broken_handshake_is_refused(ws_gateway, ws_upstream, token, method, change, status):
    upstream, _ = ws_upstream
    resp = await ws_gateway.request(method, "/ws", headers={**handshake_headers(**bearer(token)), **change})
    assert resp.status == status and (await resp.json())["code"] in {"bad_request", "method_not_allowed"}
    if status == 426:
        assert resp.headers["Sec-WebSocket-Version"] == "13"
    assert upstream.handshakes == []


async def test_plain_http_still_works_on_a_websocket_route(ws_gateway, token):
    resp = await ws_gateway.get("/ws/x", headers={**bearer(token), "X-User-Id": "mallory"})
    assert resp.status == 200
    body = await resp.json()
    assert body["plain"] and body["headers"]["X-User-Id"] == "alice"


# -- hygiene -----------------------------------------------------------------------


async def test_the_token_is_never_logged(gateway_process, ws_upstream, users_file, tmp_path):
    """The real ``gateway run`` at DEBUG: a socket's access line is written, and no token in any line."""
    _, url = ws_upstream
    port = gateway_process(base_config(url, users_file, routes=ws_routes(url)), "--log-level", "DEBUG")
    base = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{base}/auth/token", json={"username": "alice", "password": "alice-password"}) as resp:
            token = (await resp.json())["access"]
        async with session.ws_connect(f"{base}/ws?access_token={token}") as ws:
            await info(ws)
        async with session.ws_connect(f"{base}/ws", protocols=[f"bearer.{token}"]) as ws:
            await info(ws)
        async with session.ws_connect(f"{base}/maybe", protocols=[f"bearer.{token}"]) as ws:  # not a token source here
            assert ws.protocol is None
        async with session.get(f"{base}/ws?access_token={token}x", headers=handshake_headers()) as resp:
            assert resp.status == 401
        async with session.get(f"{base}/down", headers=handshake_headers(**{"Sec-WebSocket-Protocol": f"bearer.{token}"})) as resp:
            assert resp.status == 502
    log = tmp_path / f"gateway-{port}.log"
    for _ in range(50):  # the access line is written when the socket's handler returns
        if log.read_text().count('"status": 101') >= 3:
            break
        await asyncio.sleep(0.1)
    text = log.read_text()
    assert '"route": "ws"' in text and '"sub": "alice"' in text and text.count('"status": 101') == 3
    assert token.rsplit(".", 1)[1] not in text and "access_token" not in text


async def test_example_upstream_serves_a_socket_through_the_gateway(make_gateway, upstream):
    route = {"name": "demo", "prefix": "/demo", "upstream": upstream, "websocket": True,
             "websocket_token": {"subprotocol_prefix": "bearer."}, "headers": {"X-User-Id": "sub"}}
    client = await make_gateway(routes=[route])
    token = (await login(client))["access"]
    async with client.ws_connect("/demo/x", protocols=[f"bearer.{token}"]) as ws:
        await ws.send_str("hi")
        assert await ws.receive_str(timeout=TIMEOUT) == "hi"
        await ws.send_str("/info")
        seen = json.loads(await ws.receive_str(timeout=TIMEOUT))
    assert seen["upstream"] == "example" and seen["path"] == "/demo/x" and seen["protocol"] is None
    assert seen["headers"]["X-User-Id"] == "alice"


@pytest.fixture
def config_errors(users_file: Path, tmp_path: Path) -> Callable[[dict[str, Any]], list[str]]:
    def errors(route: dict[str, Any]) -> list[str]:
        raw = base_config("http://127.0.0.1:9", users_file, routes=[{"prefix": "/ws", "upstream": "http://127.0.0.1:9", **route}])
        with pytest.raises(ConfigError) as exc:
            parse_config(raw, tmp_path)
        return exc.value.problems

    return errors


@pytest.mark.parametrize(
    "route,expected",
    [
        ({"websocket_token": {"query_param": "t"}}, "routes[0]: websocket_token: needs websocket: true"),
        ({"websocket": True, "auth": "none", "websocket_token": {"subprotocol_prefix": "b."}}, "auth: none takes no token"),
        ({"websocket": True, "websocket_token": {"query_param": "a b"}}, "routes[0].websocket_token.query_param"),
        ({"websocket": True, "websocket_token": {"subprotocol_prefix": "bearer,"}}, "routes[0].websocket_token.subprotocol_prefix"),
        ({"websocket": True, "websocket_token": {"cookie": "x"}}, "routes[0].websocket_token.cookie: unknown key"),
    ],
)
def test_websocket_config_is_validated(config_errors, route, expected):
    assert any(expected in problem for problem in config_errors(route)), config_errors(route)
