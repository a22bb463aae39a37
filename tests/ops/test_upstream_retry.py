"""An upstream closing pooled keep-alive connections, and clients leaving mid-upload.

Idempotent requests (no body, or a small one the gateway read first) are sent
again on a fresh connection; POST and PATCH never are; a client that aborts its
upload is a 499 ``client_closed``, not an upstream failure.
"""
from __future__ import annotations

import asyncio
import json
from collections import Counter
from typing import AsyncIterator

import aiohttp
import pytest

from tests.conftest import base_config
from tests.support.sockets import connect

ROUNDS = 10


class ClosingUpstream:
    """Answers the first request on each connection (keep-alive), then closes the connection when the
    next request arrives, unread: the race of an upstream's keep-alive timeout, on every reuse."""

    def __init__(self) -> None:
        self.processed: Counter[str] = Counter()
        self.server: asyncio.Server | None = None
        self.tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.tasks.add(asyncio.current_task())  # type: ignore[arg-type]
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            method = head.split(b" ", 1)[0].decode()
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            await reader.readexactly(length)
            self.processed[method] += 1
            body = json.dumps({"method": method, "bytes": length}).encode()
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                         % (len(body), b"" if method == "HEAD" else body))
            await writer.drain()
            await reader.read(1)  # the next request on this connection: hang up without answering
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


@pytest.fixture
async def closing_upstream() -> AsyncIterator[tuple[ClosingUpstream, str]]:
    upstream = ClosingUpstream()
    url = await upstream.start()
    yield upstream, url
    await upstream.close()


@pytest.mark.parametrize("method,body,retried", [
    ("GET", None, True),
    ("HEAD", None, True),
    ("DELETE", None, True),
    ("PUT", b"x" * 1000, True),  # small: read first, so it can be sent again
    ("PUT", b"x" * 200_000, False),  # large: streamed, so it cannot
    ("POST", b"x" * 1000, False),  # never: its bytes may have reached the upstream
    ("PATCH", b"x" * 1000, False),
])
async def test_reused_connection_closed_by_the_upstream(make_gateway, closing_upstream, method, body, retried):
    upstream, url = closing_upstream
    gateway = await make_gateway(routes=[{"name": "r", "prefix": "/r", "upstream": url, "auth": "none"}])
    statuses = Counter()
    for _ in range(ROUNDS):
        resp = await gateway.request(method, "/r/x", data=body)
        await resp.read()
        statuses[resp.status] += 1
    if retried:
        assert statuses == Counter({200: ROUNDS})
    else:
        assert set(statuses) <= {200, 502} and statuses[502] > 0
        assert upstream.processed[method] == statuses[200]  # each answered once, none sent twice


async def test_client_aborting_its_upload_is_499_not_502(gateway_process, upstream, users_file):
    port = gateway_process(base_config(upstream, users_file))
    for _ in range(3):
        reader, writer = await connect(port)
        writer.write(b"POST /public/upload HTTP/1.1\r\nHost: gw\r\nContent-Length: 1000000\r\n\r\n" + b"x" * 100_000)
        await writer.drain()
        await asyncio.sleep(0.3)
        writer.transport.abort()
    async with aiohttp.ClientSession() as session:  # the gateway is fine, and has logged the three
        async with session.get(f"http://127.0.0.1:{port}/public/x") as resp:
            assert resp.status == 200
    await asyncio.sleep(0.5)
    lines = [json.loads(line) for line in gateway_process.log(port).splitlines() if line.startswith("{")]
    uploads = [line for line in lines if line.get("path") == "/public/upload"]
    assert [(line["status"], line.get("code")) for line in uploads] == [(499, "client_closed")] * 3
    assert not any(line.get("upstream_error") for line in uploads)
