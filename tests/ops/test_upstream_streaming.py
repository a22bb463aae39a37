"""1 GiB each way through a real `gateway run`: constant memory, with a client that stalls a while first.

The gateway's peak resident memory (VmHWM) may grow by a few buffers, never
by the size of the transfer: a download stops reading from the upstream while
the client is not reading (back-pressure), an upload is sent as it arrives.
"""
from __future__ import annotations

import asyncio
from pathlib import Path
from typing import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from tests.conftest import base_config

pytestmark = [pytest.mark.slow, pytest.mark.serial]  # peak memory of a 1 GiB transfer: alone on the machine

GIB = 1024 ** 3
CHUNK = 1024 * 1024
GROWTH = 96 * 1024 * 1024  # bytes of peak memory the transfer may add: buffers, never the body


def peak_memory(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


@pytest.fixture
async def bulk_upstream(aiohttp_server) -> str:
    block = b"\0" * CHUNK

    async def download(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Length": str(GIB)})
        await response.prepare(request)
        for _ in range(GIB // CHUNK):
            await response.write(block)
        await response.write_eof()
        return response

    async def upload(request: web.Request) -> web.Response:
        size = 0
        async for chunk in request.content.iter_any():
            size += len(chunk)
        return web.json_response({"size": size})

    app = web.Application()
    app.router.add_get("/down", download)  # the public route strips its prefix
    app.router.add_post("/up", upload)
    server = await aiohttp_server(app)
    return str(server.make_url("")).rstrip("/")


async def test_one_gib_each_way_in_constant_memory(gateway_process, bulk_upstream, users_file):
    port = gateway_process(base_config(bulk_upstream, users_file))
    pid = gateway_process.procs[port].pid
    base = f"http://127.0.0.1:{port}"
    timeout = aiohttp.ClientTimeout(total=240)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        async with session.post(base + "/public/up", data=b"warm") as warm:
            assert warm.status == 200
        before = peak_memory(pid)
        async with session.get(base + "/public/down") as resp:
            assert resp.status == 200
            await asyncio.sleep(2)  # a client that does not read: the gateway must stop reading too
            stalled = peak_memory(pid)
            total = 0
            async for chunk in resp.content.iter_chunked(CHUNK):
                total += len(chunk)
        assert total == GIB
        assert stalled - before < GROWTH and peak_memory(pid) - before < GROWTH

        async def body() -> AsyncIterator[bytes]:
            block = b"u" * CHUNK
            for _ in range(GIB // CHUNK):
                yield block

        async with session.post(base + "/public/up", data=body()) as resp:
            assert resp.status == 200 and (await resp.json())["size"] == GIB
        assert peak_memory(pid) - before < GROWTH
