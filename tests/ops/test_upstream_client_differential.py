"""The gateway's upstream client against aiohttp's, request for request, on real upstreams.

The same requests go through the lean client (``gateway.upstream.client``:
the head the gateway serialises, the pool, httptools parsing) and through
aiohttp's client configured as the gateway used it until now (``Upstream.session``
with the same call as the old ``Upstream.forward``), to the example upstream
(in process, echoing what reached it), a Django app on gunicorn 21.2 (gthread,
keep-alive) and Debian's nginx (static files, WebDAV, 204, keep-alive limit).
Status, reason, headers (less ``Date``, ``Server`` and per-connection ids)
and body bytes must be identical; connections are counted at the upstream.
"""
from __future__ import annotations

import asyncio
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import AsyncIterator, Callable, Iterator

import aiohttp
import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict
from yarl import URL

from gateway.example_upstream import create_upstream
from gateway.upstream.client import request_head, send
from gateway.upstream.http import Upstream
from tests.support.processes import ROOT, ServerProcess

pytestmark = pytest.mark.slow

HERE = ROOT / "tests" / "upstreams" / "differential"
IGNORED = {"date", "server", "x-conn"}
TIMEOUT = 10.0

BodyFactory = Callable[[], bytes | AsyncIterator[bytes] | None]


@dataclass
class Answer:
    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes
    conn: str | None  # the upstream's id of the connection, where it says one

    def comparable(self) -> tuple[int, str, list[tuple[str, str]], bytes]:
        return self.status, self.reason, [(k.lower(), v) for k, v in self.headers if k.lower() not in IGNORED], self.body


def no_body() -> None:
    return None


def chunks(total: int, size: int = 16 * 1024) -> BodyFactory:
    def factory() -> AsyncIterator[bytes]:
        async def gen() -> AsyncIterator[bytes]:
            sent = 0
            while sent < total:
                part = bytes([sent % 251]) * min(size, total - sent)
                sent += len(part)
                yield part
        return gen()
    return factory


def data(payload: bytes) -> BodyFactory:
    return lambda: payload


async def lean(upstream: Upstream, base: str, method: str, target: str, headers: dict[str, str], body: BodyFactory) -> Answer:
    origin = upstream.origin(base)
    sent = body()
    fields = CIMultiDict(headers)
    head = request_head(method, target, origin, fields, sent)
    chunked = sent is not None and not isinstance(sent, bytes) and "Content-Length" not in fields
    response = await send(upstream.pool, origin, method, head, sent, TIMEOUT, chunked=chunked)
    try:
        parts = []
        while part := await response.read():
            parts.append(part)
    finally:
        response.close()
    return Answer(response.status, response.reason, list(response.headers), b"".join(parts),
                  dict(response.headers).get("X-Conn"))


async def old(upstream: Upstream, base: str, method: str, target: str, headers: dict[str, str], body: BodyFactory) -> Answer:
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=TIMEOUT, sock_read=TIMEOUT)
    async with upstream.session.request(method, URL(base + target, encoded=True), headers=CIMultiDict(headers), data=body(),
                                        allow_redirects=False, timeout=timeout) as response:
        payload = await response.read()
        return Answer(response.status, response.reason or "", list(_decoded(response)), payload,
                      response.headers.get("X-Conn"))


def _decoded(response: aiohttp.ClientResponse) -> Iterator[tuple[str, str]]:
    for name, value in response.raw_headers:
        yield name.decode("utf-8", "surrogateescape"), value.decode("utf-8", "surrogateescape")


@pytest.fixture
async def clients() -> AsyncIterator[Upstream]:
    upstream = Upstream()
    await upstream.start()
    yield upstream
    await upstream.close()


async def both(upstream: Upstream, base: str, method: str, target: str, headers: dict[str, str] | None = None,
               body: BodyFactory = no_body) -> tuple[Answer, Answer]:
    new = await lean(upstream, base, method, target, dict(headers or {}), body)
    before = await old(upstream, base, method, target, dict(headers or {}), body)
    assert new.comparable() == before.comparable(), f"{method} {target}"
    return new, before


# -- the example upstream ------------------------------------------------------------------------------

@pytest.fixture
async def example(aiohttp_server) -> AsyncIterator[tuple[str, set[int]]]:
    seen: set[int] = set()

    @web.middleware
    async def count(request: web.Request, handler):  # type: ignore[no-untyped-def]
        seen.add(id(request.transport))
        return await handler(request)

    app = create_upstream()
    app.middlewares.append(count)
    server = await aiohttp_server(app)
    yield str(server.make_url("")).rstrip("/"), seen


@pytest.mark.parametrize("method,body,headers", [
    ("GET", no_body, {}),
    ("HEAD", no_body, {}),
    ("DELETE", no_body, {}),
    ("OPTIONS", no_body, {"Accept": "text/plain"}),
    ("POST", no_body, {}),  # Content-Length: 0 added, as aiohttp did
    ("POST", data(b"x" * 1000), {"Content-Length": "1000", "Content-Type": "text/plain"}),
    ("PUT", data(b"y" * 5000), {"Content-Length": "5000"}),
    ("POST", chunks(300_000), {}),  # the client's was chunked: chunked upstream too
    ("PATCH", chunks(200_000), {"Content-Length": "200000"}),  # streamed with the client's length
    ("POST", chunks(100_000), {"Expect": "100-continue", "Content-Length": "100000"}),
])
async def test_example_upstream(clients, example, method, body, headers):
    base, _ = example
    new, before = await both(clients, base, method, "/some/path?q=1&r=%2F", {"X-User-Id": "u1", **headers}, body)
    if method != "HEAD":
        echoed = json.loads(new.body)
        assert echoed["headers"]["X-User-Id"] == "u1" and echoed["path"] == "/some/path" and echoed["query"] == "q=1&r=%2F"


async def test_example_upstream_keeps_one_connection(clients, example):
    base, seen = example
    for _ in range(5):
        await lean(clients, base, "GET", "/a", {}, no_body)
    assert len(seen) == 1
    seen.clear()
    for _ in range(5):
        await old(clients, base, "GET", "/a", {}, no_body)
    assert len(seen) == 1


# -- Django on gunicorn ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def django(tmp_path_factory) -> Iterator[str]:
    pytest.importorskip("django")
    tmp = tmp_path_factory.mktemp("django")
    server = ServerProcess("gunicorn-django", lambda port, _: [
        sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}", "--workers", "1", "--worker-class", "gthread",
        "--threads", "4", "--keep-alive", "30", "--chdir", str(HERE), "--graceful-timeout", "2", "django_app:application",
    ], tmp).start()
    yield server.url
    server.stop()


@pytest.mark.parametrize("method,target,body,headers", [
    ("GET", "/echo?a=b", no_body, {"Accept": "application/json"}),
    ("POST", "/echo", data(b"z" * 2000), {"Content-Length": "2000", "Content-Type": "text/plain"}),
    ("POST", "/echo", chunks(150_000), {}),
    ("PUT", "/echo", chunks(70_000), {"Expect": "100-continue", "Content-Length": "70000"}),
    ("GET", "/stream", no_body, {}),
    ("GET", "/status/204", no_body, {}),
    ("GET", "/status/304", no_body, {}),
    ("GET", "/cookies", no_body, {}),
    ("GET", "/big", no_body, {}),
])
async def test_django_on_gunicorn(clients, django, method, target, body, headers):
    new, _ = await both(clients, django, method, target, headers, body)
    if target == "/cookies":
        assert [v.split("=")[0] for k, v in new.headers if k == "Set-Cookie"] == ["a", "b", "c"]


async def test_gunicorn_answering_head_with_a_body_desyncs_nothing(clients, django):
    """gunicorn 21 sends Django's body even to HEAD; aiohttp's client then reads it as the next answer (a
    desync: 'Bad status line'). The lean client closes the connection after every HEAD: the next request
    gets its own answer."""
    for target in ("/stream", "/big"):
        head = await lean(clients, django, "HEAD", target, {}, no_body)
        assert head.status == 200 and head.body == b""
        for _ in range(3):
            answer = await lean(clients, django, "GET", "/echo?after=head", {}, no_body)
            assert answer.status == 200 and json.loads(answer.body)["path"] == "/echo?after=head"


async def test_django_keeps_one_connection(clients, django):
    for client in (lean, old):
        conns = {(await client(clients, django, "GET", "/echo", {}, no_body)).conn for _ in range(5)}
        assert len(conns) == 1, client.__name__


# -- nginx ----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def nginx_files(tmp_path_factory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("nginx")
    www = tmp / "www"
    (www / "files").mkdir(parents=True)
    (www / "big.bin").write_bytes(os.urandom(3 * 1024 * 1024))
    (www / "text.txt").write_text("compressible text " * 20_000)
    binary = "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else "nginx"

    def command(port: int, tmp: Path) -> list[str]:
        conf = tmp / "nginx.conf"
        conf.write_text((HERE / "nginx.conf.template").read_text().replace("@PORT@", str(port)).replace("@TMP@", str(tmp)))
        return [binary, "-p", str(tmp), "-e", str(tmp / "error.log"), "-c", str(conf)]

    server = ServerProcess("nginx-differential", command, tmp).start()
    yield server.url
    server.stop()


@pytest.mark.parametrize("method,target,headers", [
    ("GET", "/big.bin", {}),
    ("HEAD", "/big.bin", {}),
    ("GET", "/big.bin", {"Range": "bytes=100-199"}),
    ("GET", "/text.txt", {"Accept-Encoding": "gzip"}),  # gzip: chunked
    ("GET", "/nocontent", {}),
    ("GET", "/missing", {}),
])
async def test_nginx_static(clients, nginx_files, method, target, headers):
    await both(clients, nginx_files, method, target, headers)


async def test_nginx_304(clients, nginx_files):
    first, _ = await both(clients, nginx_files, "GET", "/big.bin")
    etag = dict(first.headers)["ETag"]
    not_modified, _ = await both(clients, nginx_files, "GET", "/big.bin", {"If-None-Match": etag})
    assert not_modified.status == 304 and not_modified.body == b""


@pytest.mark.parametrize("body,headers", [
    (data(b"d" * 40_000), {"Content-Length": "40000"}),
    (chunks(500_000), {}),
    (chunks(100_000), {"Content-Length": "100000", "Expect": "100-continue"}),
])
async def test_nginx_webdav_bodies(clients, nginx_files, body, headers):
    results = {}
    for client in (lean, old):
        steps = []
        for method, step_body, step_headers in [("DELETE", no_body, {}), ("PUT", body, headers), ("PUT", body, headers),
                                                ("GET", no_body, {})]:
            answer = await client(clients, nginx_files, method, "/files/upload.bin", step_headers, step_body)
            steps.append(answer.comparable())
        results[client.__name__] = steps[1:]  # the DELETE only resets the file (404 the very first time)
    assert results["lean"] == results["old"]
    assert [s[0] for s in results["lean"]] == [201, 204, 200]


async def test_nginx_connection_close_after_four_requests(clients, nginx_files):
    for client in (lean, old):
        answers = [await client(clients, nginx_files, "GET", "/nocontent", {}, no_body) for _ in range(8)]
        conns = [a.conn for a in answers]
        assert len(set(conns)) == 2, (client.__name__, conns)  # keepalive_requests 4: Connection: close, then a new one
        assert [dict(a.headers).get("Connection") for a in answers][3] == "close"


# -- random well-framed answers: both clients read them alike ---------------------------------------------

TOKEN = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_", min_size=1, max_size=12)
FRAMING = {"content-length", "transfer-encoding", "connection", "keep-alive", "date", "server", "upgrade"}
VALUE = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789=;,/:.\"()<>@?", max_size=30)


@st.composite
def answers(draw: st.DrawFn) -> bytes:
    status = draw(st.sampled_from([200, 201, 202, 203, 204, 206, 301, 302, 304, 400, 404, 418, 500, 503]))
    reason = draw(st.text(alphabet="abcdefghijklmnopqrstuvwxyz ABC", max_size=20)).strip()
    names = draw(st.lists(TOKEN.filter(lambda n: n.lower() not in FRAMING), max_size=8))
    fields = [(name, draw(VALUE)) for name in names] + [("Set-Cookie", f"c{i}=v{i}") for i in range(draw(st.integers(0, 3)))]
    head = f"HTTP/1.1 {status} {reason}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in fields)
    if status in (204, 304):
        return (head + "\r\n").encode()
    body = draw(st.binary(max_size=3000))
    if draw(st.booleans()):
        return (head + f"Content-Length: {len(body)}\r\n\r\n").encode() + body
    cuts = sorted(draw(st.lists(st.integers(0, len(body)), max_size=5)))
    pieces = [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)], strict=False) if b > a]
    return (head + "Transfer-Encoding: chunked\r\n\r\n").encode() + b"".join(
        b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"


async def _both_read(answer: bytes) -> tuple[Answer, Answer]:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                await reader.readuntil(b"\r\n\r\n")
                writer.write(answer)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    base = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    upstream = Upstream()
    await upstream.start()
    try:
        async with asyncio.timeout(TIMEOUT):
            return (await lean(upstream, base, "GET", "/h", {}, no_body), await old(upstream, base, "GET", "/h", {}, no_body))
    finally:
        await upstream.close()
        server.close()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(answer=answers())
def test_random_well_framed_answers_read_alike(answer):
    new, before = asyncio.run(_both_read(answer))
    assert new.comparable() == before.comparable()


@pytest.mark.parametrize("interim", [
    b"HTTP/1.1 100 Continue\r\n\r\n",
    b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n",
    b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 102 Processing\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n",
])
async def test_interim_answers_are_consumed_alike(interim):
    new, before = await _both_read(interim + b"HTTP/1.1 201 Created\r\nX-Final: yes\r\nContent-Length: 4\r\n\r\ndone")
    assert new.comparable() == before.comparable()
    assert (new.status, new.body, new.headers) == (201, b"done", [("X-Final", "yes"), ("Content-Length", "4")])
