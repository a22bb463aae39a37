"""Hostile upstream answers through the real gateway: never a desync, never a hang, never a 500; https upstreams.

A raw asyncio upstream answers ``/ok/...`` properly (keep-alive, the path as
the body) and ``/hostile/<name>`` with the bytes of one broken answer. After
each broken answer, the next requests on the same client connection must get
their own answers, and the upstream connection that carried the broken
answer must never carry another request.
"""
from __future__ import annotations

import asyncio
import json
import ssl
from pathlib import Path
from typing import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from gateway.example_upstream import create_upstream
from gateway.runtime import GATEWAY
from gateway.upstream import pool
from tests.support.tls import certificates

pytestmark = pytest.mark.slow

TIMEOUT = 1.0  # the route's timeout
BOUND = 15.0  # no step of these tests takes longer


def ok(body: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)


HOSTILE: dict[str, bytes] = {
    "cl_and_te": b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "invalid_cl": b"HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\nabc",
    "negative_cl": b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\nabc",
    "huge_cl": b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999999\r\n\r\nabc",
    "two_cl": b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
    "bad_chunk_size": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
    "bad_chunk_end": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcdef\r\n0\r\n\r\n",
    "oversized_head": b"HTTP/1.1 200 OK\r\n" + b"X-Pad: " + b"a" * 4000 + b"\r\n" + (b"X-More: " + b"b" * 4000 + b"\r\n") * 10
                      + b"Content-Length: 0\r\n\r\n",
    "interim_flood": b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n" * 2000 + ok(b"late"),
    "unasked_upgrade": b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
    "early_close_head": b"HTTP/1.1 200 OK\r\nContent-Le",
    "early_close_body": b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nabc",
    "early_close_chunked": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n",
    "garbage": b"\x00\x01garbage\xff\r\n\r\n",
    "http09": b"<html>hello</html>",
    "obs_fold": b"HTTP/1.1 200 OK\r\nX-A: a\r\n folded\r\nContent-Length: 2\r\n\r\nok",
    "space_before_colon": b"HTTP/1.1 200 OK\r\nContent-Length : 2\r\n\r\nok",
    "pipelined_extra": ok(b"first") + ok(b"smuggled"),
    "garbage_after": ok(b"first") + b"GARBAGE",
    "body_on_204": b"HTTP/1.1 204 No Content\r\n\r\nsmuggled",
    "body_on_304": b"HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n" + ok(b"smuggled"),
    "http10_no_keepalive": b"HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nhello",
    "connection_close": b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 5\r\n\r\nhello",
    "read_until_close": b"HTTP/1.1 200 OK\r\n\r\nuntil close",
    "non_utf8_header": b"HTTP/1.1 200 OK\r\nX-Bin: \xff\xfe\x80\r\nContent-Length: 2\r\n\r\nok",
    "bare_lf": b"HTTP/1.1 200 OK\nContent-Length: 2\n\nok",
}
# a HEAD answer followed by 60 bytes that look like an answer of their own
BODY_ON_HEAD = b"HTTP/1.1 200 OK\r\nContent-Length: 60\r\n\r\n" + (ok(b"smuggled") + b" " * 60)[:60]
# what the client may see: a status (502 or the answer as sent), or a cut connection once headers went out
EXPECTED: dict[str, set[int | str]] = {
    "bad_chunk_size": {502, "cut"}, "bad_chunk_end": {502, "cut"}, "early_close_body": {502, "cut"},
    "early_close_chunked": {502, "cut"}, "pipelined_extra": {200}, "garbage_after": {200}, "body_on_204": {204},
    "body_on_304": {304}, "http10_no_keepalive": {200}, "connection_close": {200}, "read_until_close": {200},
    "non_utf8_header": {200, 502}, "bare_lf": {200, 502},
}
WELL_FRAMED = {"non_utf8_header"}  # odd bytes in a value, but framed well: the connection may be reused
CLOSES_AFTER = {"early_close_head", "early_close_body", "early_close_chunked", "http09", "read_until_close",
                "http10_no_keepalive", "connection_close"}


class RawUpstream:
    """Reads each request (Content-Length or chunked body), answers by path; records which connection carried what."""

    def __init__(self) -> None:
        self.connections: list[list[str]] = []
        self.server: asyncio.Server | None = None
        self.tasks: set[asyncio.Task[None]] = set()
        self.writers: set[asyncio.StreamWriter] = set()
        self.stopping = asyncio.Event()
        self.closed_by_peer = 0  # connections the gateway closed (EOF or reset seen here)

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.tasks.add(asyncio.current_task())  # type: ignore[arg-type]
        self.writers.add(writer)
        paths: list[str] = []
        self.connections.append(paths)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                method, path = head.split(b" ", 2)[:2]
                paths.append(path.decode())
                lines = head.lower().split(b"\r\n")
                name = path.decode().rsplit("/", 1)[-1]
                if name == "before-body":  # answers without reading the body, and closes
                    writer.write(b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                    await writer.drain()
                    return
                await _read_body(reader, lines)
                if path.startswith(b"/r/hostile/"):
                    await self._hostile(name, writer)
                    if name in CLOSES_AFTER:
                        return
                elif b"/slow/" in path:
                    await self._slow(name, writer)
                else:
                    body = json.dumps({"path": path.decode(), "method": method.decode()}).encode()
                    writer.write(ok(b"" if method == b"HEAD" else body) if method != b"HEAD" else
                                 b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body))
                    await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            if not self.stopping.is_set():
                self.closed_by_peer += 1
        finally:
            writer.close()

    async def _hostile(self, name: str, writer: asyncio.StreamWriter) -> None:
        writer.write(BODY_ON_HEAD if name == "body_on_head" else HOSTILE[name])
        await writer.drain()

    async def _slow(self, name: str, writer: asyncio.StreamWriter) -> None:
        if name == "never":
            await self._hold()
        elif name == "drip-head":  # one head byte every 0.2 s: each read is quick, the head never ends in time
            for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"x" * 100:
                writer.write(bytes([byte]))
                await writer.drain()
                await asyncio.sleep(0.2)
        elif name == "late-extra":  # a complete answer, then stray bytes while the connection is idle
            writer.write(ok(b"first"))
            await writer.drain()
            await asyncio.sleep(0.2)
            writer.write(ok(b"stray"))
            await writer.drain()
            await self._hold()

    async def _hold(self) -> None:
        """Keep the connection open and silent until the test ends."""
        try:
            async with asyncio.timeout(BOUND * 2):
                await self.stopping.wait()
        except TimeoutError:
            pass

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
        self.stopping.set()
        for writer in self.writers:
            writer.transport.abort()
        async with asyncio.timeout(BOUND):
            await asyncio.gather(*self.tasks, return_exceptions=True)


async def _read_body(reader: asyncio.StreamReader, lines: list[bytes]) -> None:
    for line in lines:
        if line.startswith(b"content-length:"):
            await reader.readexactly(int(line.split(b":", 1)[1]))
            return
        if line.startswith(b"transfer-encoding:") and b"chunked" in line:
            while True:
                size = int((await reader.readuntil(b"\r\n")).strip(), 16)
                await reader.readexactly(size + 2)
                if size == 0:
                    return


@pytest.fixture
async def raw() -> AsyncIterator[tuple[RawUpstream, str]]:
    upstream = RawUpstream()
    url = await upstream.start()
    yield upstream, url
    await upstream.close()


@pytest.fixture
async def gw(make_gateway, raw):  # type: ignore[no-untyped-def]
    upstream, url = raw
    return await make_gateway(routes=[{"name": "r", "prefix": "/r", "upstream": url, "auth": "none", "timeout": f"{TIMEOUT}s"}])


async def _outcome(gw, method: str, path: str, **kwargs) -> int | str:  # type: ignore[no-untyped-def]
    try:
        async with asyncio.timeout(BOUND):
            resp = await gw.request(method, path, **kwargs)
            await resp.read()
            return int(resp.status)
    except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError, aiohttp.ClientOSError):
        return "cut"


async def _then_served(gw, upstream: RawUpstream, hostile_path: str, reusable: bool = False) -> None:  # type: ignore[no-untyped-def]
    await asyncio.sleep(0.05)  # let a close from either side land
    for i in range(3):
        async with asyncio.timeout(BOUND):
            resp = await gw.get(f"/r/ok/{i}")
            assert resp.status == 200
            assert json.loads(await resp.read())["path"] == f"/r/ok/{i}"  # its own answer: no desync
    carried = [paths for paths in upstream.connections if hostile_path in paths]
    assert carried, upstream.connections
    assert reusable or all(paths[-1] == hostile_path for paths in carried), upstream.connections  # never reused after


@pytest.mark.parametrize("name", sorted(HOSTILE))
async def test_hostile_answer(gw, raw, name):
    upstream, _ = raw
    await gw.get("/r/ok/warm")  # a pooled connection exists: the hostile answer may come on a reused one
    path = f"/r/hostile/{name}"
    outcome = await _outcome(gw, "GET", path)
    assert outcome in EXPECTED.get(name, {502}), outcome
    await _then_served(gw, upstream, path, reusable=name in WELL_FRAMED)


@pytest.mark.parametrize("target", ["/r/hostile/body_on_head", "/r/ok/head"])
async def test_body_on_head_is_never_read_as_the_next_answer(gw, raw, target):
    """A HEAD answer's length cannot be known: its connection is closed, whatever followed the head."""
    upstream, _ = raw
    assert await _outcome(gw, "HEAD", target) == 200
    await _then_served(gw, upstream, target)


async def test_silent_upstream_is_504_and_asked_once(gw, raw):
    upstream, _ = raw
    await gw.get("/r/ok/warm")  # on a reused connection a timeout is still not the keep-alive race: no retry
    assert await _outcome(gw, "GET", "/r/slow/never") == 504
    assert sum(paths.count("/r/slow/never") for paths in upstream.connections) == 1
    await _then_served(gw, upstream, "/r/slow/never")


async def test_a_reused_connection_keeps_each_routes_own_timeout(make_gateway, raw):
    """One connection timer serves the pool's idle time and each exchange's read-idle timeout: a connection last
    armed for a longer deadline still times a short route out at its own timeout, and a long route on a
    connection last used by a short one is not cut at the short one's."""
    upstream, url = raw
    gw = await make_gateway(routes=[
        {"name": "r", "prefix": "/r", "upstream": url, "auth": "none", "timeout": f"{TIMEOUT}s"},
        {"name": "long", "prefix": "/long", "upstream": url, "auth": "none", "timeout": f"{3 * TIMEOUT}s"},
    ])
    loop = asyncio.get_running_loop()
    assert await _outcome(gw, "GET", "/long/ok/warm") == 200  # its timer was armed 3 s out, then for the idle time
    started = loop.time()
    assert await _outcome(gw, "GET", "/r/slow/never") == 504
    assert loop.time() - started < 3 * TIMEOUT  # the short route's own timeout, not the armed one
    assert await _outcome(gw, "GET", "/r/ok/warm") == 200  # now armed TIMEOUT out
    started = loop.time()
    assert await _outcome(gw, "GET", "/long/slow/never") == 504
    assert loop.time() - started >= 2.5 * TIMEOUT  # not cut at the short route's deadline
    assert len(upstream.connections) <= 3


async def test_slow_drip_of_the_head_is_504(gw, raw):
    upstream, _ = raw
    assert await _outcome(gw, "GET", "/r/slow/drip-head") == 504
    await _then_served(gw, upstream, "/r/slow/drip-head")


async def test_stray_bytes_on_an_idle_connection_close_it(gw, raw):
    upstream, _ = raw
    assert await _outcome(gw, "GET", "/r/slow/late-extra") == 200
    await asyncio.sleep(0.5)  # the stray answer arrives while the connection is idle in the pool
    await _then_served(gw, upstream, "/r/slow/late-extra")


async def test_answer_before_the_body_was_read(gw, raw):
    upstream, _ = raw

    async def body() -> AsyncIterator[bytes]:
        for _ in range(64):
            yield b"u" * 16384

    outcome = await _outcome(gw, "POST", "/r/ok/before-body", data=body())
    assert outcome in {413, 502}, outcome  # 502 when the upstream's reset outran its answer
    await _then_served(gw, upstream, "/r/ok/before-body")


async def test_idle_connections_close_after_the_idle_time_and_at_shutdown(gw, raw, monkeypatch):
    upstream, _ = raw
    monkeypatch.setattr(pool, "IDLE_TIMEOUT", 0.3)
    assert await _outcome(gw, "GET", "/r/ok/idle") == 200
    await _eventually(lambda: upstream.closed_by_peer == 1)  # closed by the gateway once idle
    assert await _outcome(gw, "GET", "/r/ok/again") == 200  # on a new connection
    assert len(upstream.connections) == 2
    await _eventually(lambda: upstream.closed_by_peer == 2)
    monkeypatch.setattr(pool, "IDLE_TIMEOUT", 60.0)
    assert await _outcome(gw, "GET", "/r/ok/kept") == 200
    await gw.app[GATEWAY].upstream.close()  # what the app's cleanup does at shutdown
    await _eventually(lambda: upstream.closed_by_peer == 3)


async def _eventually(check) -> None:  # type: ignore[no-untyped-def]
    async with asyncio.timeout(BOUND):
        while not check():
            await asyncio.sleep(0.05)


# -- https upstreams: asyncio's TLS, verification on ----------------------------------------------------

@pytest.fixture
async def https_upstream(tmp_path) -> AsyncIterator[tuple[str, Path]]:
    ca, cert, key = certificates(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    runner = web.AppRunner(create_upstream())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    port = runner.addresses[0][1]
    yield f"https://127.0.0.1:{port}", ca
    await runner.cleanup()


async def test_https_upstream_with_an_untrusted_certificate_is_502(make_gateway, https_upstream):
    url, _ = https_upstream
    gw = await make_gateway(routes=[{"name": "s", "prefix": "/s", "upstream": url, "auth": "none"}])
    assert await _outcome(gw, "GET", "/s/x") == 502


async def test_https_upstream_trusted_through_the_system_store(make_gateway, https_upstream, monkeypatch):
    url, ca = https_upstream
    monkeypatch.setenv("SSL_CERT_FILE", str(ca))  # what an operator does for a private CA
    gw = await make_gateway(routes=[{"name": "s", "prefix": "/s", "upstream": url, "auth": "none"}])
    for i in range(3):
        resp = await gw.post(f"/s/x{i}", data=b"b" * 100_000)
        assert resp.status == 200
        seen = await resp.json()
        assert seen["path"] == f"/s/x{i}" and seen["body_bytes"] == 100_000
        assert seen["headers"]["Host"] == url.removeprefix("https://")
    assert gw.app[GATEWAY].upstream.pool.opened == 1  # one TLS connection, kept alive
