"""Misbehaving upstreams (real sockets, raw asyncio servers): 502, 504 or a cut connection, never a hang,
and a sick upstream does not hold up the other routes."""
from __future__ import annotations

import asyncio
import socket
import struct
from typing import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import free_port

Behaviour = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: 100000\r\n\r\n"
BOUND = 15  # seconds: any wait longer than this is a hang


@pytest.fixture
async def raw_upstream() -> AsyncIterator[Callable[[Behaviour], Awaitable[str]]]:
    """Start a raw TCP server with a behaviour; its URL is returned. All closed after the test."""
    servers: list[asyncio.Server] = []
    tasks: set[asyncio.Task[None]] = set()

    async def start(behaviour: Behaviour) -> str:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            tasks.add(asyncio.current_task())  # type: ignore[arg-type]
            try:
                await reader.readuntil(b"\r\n\r\n")
                await behaviour(reader, writer)
            except (ConnectionError, asyncio.IncompleteReadError):
                pass
            finally:
                writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        servers.append(server)
        return f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"

    yield start
    for server in servers:
        server.close()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def close_at_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Accepts, reads the request, hangs up without a word."""


async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await asyncio.sleep(3600)


async def reset_mid_body(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(HEAD + b"x" * 1000)
    await writer.drain()
    await asyncio.sleep(0.05)
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close = RST
    writer.transport.abort()


async def stall_mid_body(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(HEAD + b"x" * 1000)
    await writer.drain()
    await asyncio.sleep(3600)


def route(name: str, upstream: str, timeout: str = "5s") -> dict:
    return {"name": name, "prefix": f"/{name}", "upstream": upstream, "auth": "none", "timeout": timeout}


async def test_refused_connection_is_502(make_gateway):
    gateway = await make_gateway(routes=[route("down", f"http://127.0.0.1:{free_port()}")])
    resp = await gateway.get("/down/x")
    assert resp.status == 502 and (await resp.json())["code"] == "upstream_unavailable"


async def test_upstream_hanging_up_without_answer_is_502(make_gateway, raw_upstream):
    gateway = await make_gateway(routes=[route("rude", await raw_upstream(close_at_once))])
    resp = await gateway.get("/rude/x")
    assert resp.status == 502 and (await resp.json())["code"] == "upstream_unavailable"


async def test_silent_upstream_is_504_within_the_route_timeout(make_gateway, raw_upstream):
    gateway = await make_gateway(routes=[route("slow", await raw_upstream(never_answer), timeout="0.5s")])
    resp = await asyncio.wait_for(gateway.get("/slow/x"), BOUND)
    assert resp.status == 504 and (await resp.json())["code"] == "upstream_timeout"


@pytest.mark.parametrize("behaviour,timeout", [(reset_mid_body, "5s"), (stall_mid_body, "0.5s")])
async def test_failure_mid_body_cuts_the_client_connection(make_gateway, raw_upstream, behaviour, timeout):
    """Headers (200, Content-Length) are already sent: the client must see an error, not a short body or a hang."""
    gateway = await make_gateway(routes=[route("flaky", await raw_upstream(behaviour), timeout=timeout)])
    resp = await asyncio.wait_for(gateway.get("/flaky/x"), BOUND)
    assert resp.status == 200
    with pytest.raises(aiohttp.ClientError):
        await asyncio.wait_for(resp.read(), BOUND)


async def test_a_stuck_upstream_does_not_hold_up_other_routes(make_gateway, raw_upstream, upstream):
    release = asyncio.Event()

    async def gated(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await release.wait()
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nlate")
        await writer.drain()

    gateway = await make_gateway(routes=[route("stuck", await raw_upstream(gated)), route("fine", upstream)])
    stuck = [asyncio.create_task(gateway.get("/stuck/x")) for _ in range(5)]
    for _ in range(10):
        resp = await asyncio.wait_for(gateway.get("/fine/x"), BOUND)
        assert resp.status == 200
    assert not any(task.done() for task in stuck)  # they are still waiting, and nothing else was
    release.set()
    for task in stuck:
        resp = await asyncio.wait_for(task, BOUND)
        assert resp.status == 200 and await resp.read() == b"late"


async def test_upstream_failures_are_counted_by_route_and_kind(make_gateway, raw_upstream):
    gateway = await make_gateway(routes=[
        route("down", f"http://127.0.0.1:{free_port()}"),
        route("slow", await raw_upstream(never_answer), timeout="0.3s"),
        route("flaky", await raw_upstream(reset_mid_body)),
    ])
    await gateway.get("/down/x")
    await gateway.get("/slow/x")
    resp = await gateway.get("/flaky/x")
    with pytest.raises(aiohttp.ClientError):
        await resp.read()
    await asyncio.sleep(0.1)  # the gateway side notices the reset after the client does
    text = await (await gateway.get("/metrics")).text()
    errors = {
        (s.labels["route"], s.labels["kind"]): s.value
        for family in text_string_to_metric_families(text) for s in family.samples
        if s.name == "gateway_upstream_errors_total"
    }
    assert errors == {("down", "unavailable"): 1, ("slow", "timeout"): 1, ("flaky", "aborted"): 1}
