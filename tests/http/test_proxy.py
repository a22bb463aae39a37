"""The proxy: injected identity, spoofing, path tricks, headers, streaming and upstream failures."""
from __future__ import annotations

import asyncio
import hashlib

import pytest
from aiohttp import web
from multidict import CIMultiDict

from tests.conftest import bearer, free_port, login


async def echo(client, path: str, **kw) -> dict:
    resp = await client.get(path, **kw)
    assert resp.status == 200, await resp.text()
    seen = await resp.json()
    seen["headers"] = CIMultiDict(seen["headers"])
    return seen


async def test_proxied_call_gets_identity_headers(gateway):
    tokens = await login(gateway)
    seen = await echo(gateway, "/api/things?x=1&y=a%26b", headers=bearer(tokens["access"]))
    headers = seen["headers"]
    assert seen["path"] == "/api/things" and seen["query"] == "x=1&y=a%26b"
    assert headers["X-User-Id"] == "alice" and headers["X-User-Roles"] == "admin,user"
    assert headers["X-User-Email"] == "alice@example.com" and headers["X-Auth-Tenant"] == "acme"
    assert "Authorization" not in headers  # not forwarded unless the route says so
    assert headers["X-Forwarded-For"] == "127.0.0.1" and headers["X-Forwarded-Proto"] == "http"
    assert headers["X-Forwarded-Host"].startswith("127.0.0.1:")


SPOOFED = {"X-User-Id": "root", "x-user-roles": "admin", "X-USER-EMAIL": "ceo@x", "X-Auth-Tenant": "other", "X-User-Anything": "1", "X-Auth-Level": "9"}


@pytest.mark.parametrize("path", ["/public/x", "/api/x", "/maybe/x"])
async def test_spoofed_identity_headers_never_reach_the_upstream(gateway, path):
    headers = dict(SPOOFED)
    if path == "/api/x":
        headers.update(bearer((await login(gateway, "bob"))["access"]))
    seen = (await echo(gateway, path, headers=headers))["headers"]
    for name in SPOOFED:
        assert seen.get(name) != SPOOFED[name]
    if path == "/api/x":
        assert seen["X-User-Id"] == "bob"
    else:
        assert not any(k.lower().startswith(("x-user-", "x-auth-")) for k in seen)


async def test_optional_route(gateway):
    assert "X-User-Id" not in (await echo(gateway, "/maybe/x"))["headers"]
    tokens = await login(gateway, "bob")
    assert (await echo(gateway, "/maybe/x", headers=bearer(tokens["access"])))["headers"]["X-User-Id"] == "bob"
    resp = await gateway.get("/maybe/x", headers=bearer("not.a.token"))
    assert resp.status == 401  # a bad token is never silently downgraded to anonymous


async def test_policy_denies_with_403(gateway):
    tokens = await login(gateway, "bob")
    resp = await gateway.get("/admin/x", headers=bearer(tokens["access"]))
    assert resp.status == 403 and (await resp.json())["code"] == "permission_denied"
    assert 'error="insufficient_scope"' in resp.headers["WWW-Authenticate"]
    alice = await login(gateway, "alice")
    assert (await gateway.get("/admin/x", headers=bearer(alice["access"]))).status == 200


async def test_unknown_route_is_404(gateway):
    resp = await gateway.get("/nowhere")
    assert resp.status == 404 and (await resp.json())["code"] == "not_found"


async def test_strip_prefix_and_upstream_base_path(make_gateway, upstream):
    gateway = await make_gateway(routes=[
        {"prefix": "/public", "upstream": upstream + "/base", "auth": "none", "strip_prefix": True},
    ])
    assert (await echo(gateway, "/public/a/b?z=1"))["path"] == "/base/a/b"
    assert (await echo(gateway, "/public"))["path"] == "/base/"


async def test_forward_authorization_when_asked(make_gateway, upstream):
    gateway = await make_gateway(routes=[{"prefix": "/api", "upstream": upstream, "forward_authorization": True}])
    tokens = await login(gateway)
    seen = await echo(gateway, "/api/x", headers=bearer(tokens["access"]))
    assert seen["headers"]["Authorization"] == f"Bearer {tokens['access']}"


async def test_claim_values_cannot_split_headers(gateway):
    """mallory's tenant claim contains CR/LF: it arrives percent-encoded, as one header."""
    tokens = await login(gateway, "mallory")
    seen = (await echo(gateway, "/api/x", headers=bearer(tokens["access"])))["headers"]
    assert seen["X-Auth-Tenant"] == "evil%0D%0AX-Injected: 1"
    assert "X-Injected" not in seen


async def test_request_id_is_kept_if_sane(gateway):
    seen = (await echo(gateway, "/public/x", headers={"X-Request-Id": "abc-123"}))["headers"]
    assert seen["X-Request-Id"] == "abc-123"
    resp = await gateway.get("/public/x", headers={"X-Request-Id": "bad id with spaces<script>"})
    rid = resp.headers["X-Request-Id"]
    assert rid != "bad id with spaces<script>" and len(rid) == 32
    assert CIMultiDict((await resp.json())["headers"])["X-Request-Id"] == rid


async def test_hop_by_hop_headers_are_dropped(gateway):
    seen = (await echo(gateway, "/public/x", headers={"Connection": "keep-alive, X-Secret-Hop", "X-Secret-Hop": "1",
                                                       "Keep-Alive": "timeout=5", "TE": "trailers", "Proxy-Authorization": "Basic x"}))["headers"]
    lowered = {k.lower() for k in seen}
    assert not lowered & {"x-secret-hop", "keep-alive", "te", "proxy-authorization"}


async def test_upgrade_on_a_plain_request_is_not_forwarded(gateway):
    seen = (await echo(gateway, "/public/x", headers={"Connection": "Upgrade, HTTP2-Settings", "Upgrade": "h2c",
                                                       "HTTP2-Settings": "AAMAAABkAAQCAAAAAAIAAAAA"}))["headers"]
    assert not {k.lower() for k in seen} & {"upgrade", "http2-settings"}
    assert seen.get("Connection", "").lower() != "upgrade"


async def test_the_clients_host_never_reaches_the_upstream(gateway, upstream):
    upstream_host = upstream.split("//", 1)[1]
    for path in ("/public/x", "/maybe/x"):
        seen = (await echo(gateway, path, headers={"Host": "evil.example"}))["headers"]
        assert seen.getall("Host") == [upstream_host], path


async def test_two_authorization_headers_are_a_400(gateway):
    token = (await login(gateway))["access"]
    for second in (f"Bearer {token}", "Basic YTpi", f"bearer {token}"):
        headers = CIMultiDict([("Authorization", f"Bearer {token}"), ("Authorization", second)])
        for path in ("/api/x", "/maybe/x", "/auth/me"):
            resp = await gateway.get(path, headers=headers)
            assert resp.status == 400, (path, second, resp.status)
            assert (await resp.json()) == {"detail": "More than one Authorization header", "code": "bad_request"}


async def test_bearer_scheme_and_token_are_read_as_documented(gateway):
    token = (await login(gateway))["access"]
    for value in (f"Bearer {token}", f"bearer {token}", f"BEARER   {token}  ", f"  Bearer {token}"):
        assert (await gateway.get("/api/x", headers={"Authorization": value})).status == 200, value
    for value in ("Bearer", "Bearer    ", "Bearer \t"):
        resp = await gateway.get("/api/x", headers={"Authorization": value})
        assert resp.status == 401 and (await resp.json()) == {"detail": "The bearer token is empty", "code": "token_not_valid"}
    for value in (f"Basic {token}", f"Bearer{token}", f"Token {token}"):  # not a bearer token: as if none was sent
        resp = await gateway.get("/api/x", headers={"Authorization": value})
        assert resp.status == 401 and (await resp.json())["code"] == "authentication_required", value
        assert "X-User-Id" not in (await echo(gateway, "/maybe/x", headers={"Authorization": value}))["headers"]


async def test_client_forwarded_headers_are_not_trusted_by_default(gateway):
    seen = (await echo(gateway, "/public/x", headers={"X-Forwarded-For": "6.6.6.6", "X-Forwarded-Host": "evil"}))["headers"]
    assert seen["X-Forwarded-For"] == "127.0.0.1" and seen["X-Forwarded-Host"] != "evil"


async def test_trusted_forwarded_headers_are_appended(make_gateway):
    gateway = await make_gateway(trust_forwarded_headers=True)
    seen = (await echo(gateway, "/public/x", headers={"X-Forwarded-For": "10.0.0.1", "X-Forwarded-Proto": "https"}))["headers"]
    assert seen["X-Forwarded-For"] == "10.0.0.1, 127.0.0.1" and seen["X-Forwarded-Proto"] == "https"


async def raw_request(client, target: str) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", client.port)
    writer.write(f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    await writer.drain()
    data = await reader.read()
    writer.close()
    return data


@pytest.mark.parametrize("target", ["/public/../admin/x", "/public/%2e%2e/admin/x", "//admin/x", "/admin%2f..", "/public/..%2fadmin", "/public%2f..%2fadmin"])
async def test_path_tricks_never_reach_another_route(gateway, target):
    data = await raw_request(gateway, target)
    assert data.startswith(b"HTTP/1.1 400"), data[:100]
    assert b'"code": "bad_request"' in data


# -- upstreams that misbehave or stream -------------------------------------------------


async def start_upstream(aiohttp_server, handler) -> str:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    server = await aiohttp_server(app)
    return str(server.make_url("")).rstrip("/")


async def test_status_headers_and_cookies_pass_through(make_gateway, aiohttp_server):
    async def handler(request: web.Request) -> web.Response:
        resp = web.Response(status=418, text="teapot", headers={"X-Custom": "1", "Connection": "X-Drop", "X-Drop": "1"})
        resp.set_cookie("session", "abc", httponly=True)
        resp.headers["X-Seen-Cookie"] = request.headers.get("Cookie", "")
        return resp

    url = await start_upstream(aiohttp_server, handler)
    gateway = await make_gateway(routes=[{"prefix": "/t", "upstream": url, "auth": "none"}])
    resp = await gateway.get("/t", headers={"Cookie": "a=1; b=2"})
    assert resp.status == 418 and await resp.text() == "teapot"
    assert resp.headers["X-Custom"] == "1" and "X-Drop" not in resp.headers
    assert resp.headers["X-Seen-Cookie"] == "a=1; b=2" and "session=abc" in resp.headers["Set-Cookie"]


async def test_upstream_down_is_502(make_gateway):
    gateway = await make_gateway(routes=[{"prefix": "/down", "upstream": f"http://127.0.0.1:{free_port()}", "auth": "none"}])
    resp = await gateway.get("/down")
    assert resp.status == 502 and (await resp.json())["code"] == "upstream_unavailable"


async def test_slow_upstream_is_504_within_the_route_timeout(make_gateway, aiohttp_server, upstream):
    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(5)
        return web.Response(text="late")

    url = await start_upstream(aiohttp_server, slow)
    gateway = await make_gateway(routes=[
        {"prefix": "/slow", "upstream": url, "auth": "none", "timeout": "0.3s"},
        {"prefix": "/fast", "upstream": upstream, "auth": "none"},
    ])
    slow_call = asyncio.ensure_future(gateway.get("/slow"))
    assert (await gateway.get("/fast")).status == 200  # other routes unaffected
    resp = await asyncio.wait_for(slow_call, 3)
    assert resp.status == 504 and (await resp.json())["code"] == "upstream_timeout"


async def test_request_body_streams_before_the_client_finishes(make_gateway, aiohttp_server):
    """The upstream sees the first chunk while the client still holds the rest: nothing is buffered."""
    first_chunk_seen = asyncio.Event()
    digest = hashlib.sha256()

    async def sink(request: web.Request) -> web.Response:
        size = 0
        async for chunk in request.content.iter_any():
            size += len(chunk)
            digest.update(chunk)
            first_chunk_seen.set()
        return web.json_response({"size": size, "sha256": digest.hexdigest()})

    url = await start_upstream(aiohttp_server, sink)
    gateway = await make_gateway(routes=[{"prefix": "/up", "upstream": url, "auth": "none"}])
    chunk = b"x" * 65536
    expected = hashlib.sha256()

    async def body():
        expected.update(chunk)
        yield chunk
        await asyncio.wait_for(first_chunk_seen.wait(), 10)  # times out if the gateway buffers
        for _ in range(256):  # 16 MiB more
            expected.update(chunk)
            yield chunk

    resp = await gateway.post("/up", data=body())
    assert resp.status == 200
    assert await resp.json() == {"size": 257 * 65536, "sha256": expected.hexdigest()}


async def test_response_body_streams_before_the_upstream_finishes(make_gateway, aiohttp_server):
    client_got_first_chunk = asyncio.Event()

    async def source(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        await resp.prepare(request)
        await resp.write(b"a" * 65536)
        await asyncio.wait_for(client_got_first_chunk.wait(), 10)  # times out if the gateway buffers
        for _ in range(64):
            await resp.write(b"b" * 65536)
        await resp.write_eof()
        return resp

    url = await start_upstream(aiohttp_server, source)
    gateway = await make_gateway(routes=[{"prefix": "/down", "upstream": url, "auth": "none"}])
    resp = await gateway.get("/down")
    total = 0
    async for chunk in resp.content.iter_any():
        total += len(chunk)
        client_got_first_chunk.set()
    assert total == 65 * 65536


async def test_the_head_of_a_streamed_answer_does_not_wait_for_its_body(make_gateway, aiohttp_server):
    """The relay holds the head back only while body bytes are already there to go with it (one write for a small
    answer): an upstream that sends its head and then waits (a stream, server-sent events) has it reach the client."""
    client_got_head = asyncio.Event()

    async def source(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"X-Stream": "1"})
        await resp.prepare(request)  # aiohttp's StreamResponse sends its head at once
        await asyncio.wait_for(client_got_head.wait(), 10)  # times out if the gateway holds the head
        await resp.write(b"event")
        await resp.write_eof()
        return resp

    url = await start_upstream(aiohttp_server, source)
    gateway = await make_gateway(routes=[{"prefix": "/events", "upstream": url, "auth": "none"}])
    resp = await asyncio.wait_for(gateway.get("/events"), 5)
    assert resp.status == 200 and resp.headers["X-Stream"] == "1"
    client_got_head.set()
    assert await asyncio.wait_for(resp.read(), 5) == b"event"


async def test_content_length_is_kept_for_legacy_upstreams(make_gateway, aiohttp_server):
    async def handler(request: web.Request) -> web.Response:
        return web.json_response({"cl": request.headers.get("Content-Length"), "te": request.headers.get("Transfer-Encoding")})

    url = await start_upstream(aiohttp_server, handler)
    gateway = await make_gateway(routes=[{"prefix": "/cl", "upstream": url, "auth": "none"}])
    resp = await gateway.post("/cl", data=b"hello world")
    assert await resp.json() == {"cl": "11", "te": None}


async def test_a_client_that_leaves_early_is_logged_not_an_error(make_config, aiohttp_server, caplog):
    """Served as `gateway run` serves (no handler cancellation): the answer has nobody to go to."""
    from gateway.app import create_app

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(0.5)
        return web.Response(text="late")

    url = await start_upstream(aiohttp_server, slow)
    runner = web.AppRunner(create_app(make_config(routes=[{"prefix": "/slow", "upstream": url, "auth": "none"}])))
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    caplog.set_level("INFO", logger="gateway")
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(0.1)
        writer.transport.abort()
        await asyncio.sleep(0.8)
    finally:
        await runner.cleanup()
    assert "unhandled error" not in caplog.text
    assert '"status": 499' in caplog.text and '"code": "client_closed"' in caplog.text
