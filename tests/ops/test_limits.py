"""Bounded resources against hostile clients, at small scale on a real `gateway run`.

Each test runs the attack with limits scaled down, then shows that a
legitimate client (another loopback address: 127.0.0.2) is still served
within a generous bound while the attack runs, and that the attackers get a
JSON refusal or a closed connection instead of holding resources forever.
"""
from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp
import pytest

from gateway.example_upstream import create_upstream
from tests.conftest import PASSWORDS, base_config, free_port
from tests.support.processes import BOUND, eventually
from tests.support.sockets import connect, stalled_upload

VISITOR = "127.0.0.2"
THIRD = "127.0.0.3"
SERVED_WITHIN = 5.0  # seconds: generous; every attack below would hold a victim for longer


async def read_answer(reader: asyncio.StreamReader, timeout: float = BOUND) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 answer with a Content-Length body: status, headers, body."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
    body = await asyncio.wait_for(reader.readexactly(int(headers.get("content-length", "0"))), timeout)
    return status, headers, body


async def closed_by_peer(reader: asyncio.StreamReader, timeout: float = BOUND) -> bool:
    try:
        rest = await asyncio.wait_for(reader.read(), timeout)
    except ConnectionError:
        return True
    return rest == b"" or rest.startswith(b"HTTP/1.1 408")


def visitor_session() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(VISITOR, 0), force_close=True))


async def timed_get(session: aiohttp.ClientSession, url: str, **kwargs: Any) -> tuple[int, dict[str, Any], float]:
    started = time.monotonic()
    async with session.get(url, timeout=aiohttp.ClientTimeout(total=BOUND), **kwargs) as resp:
        body = await resp.json()
        return resp.status, body, time.monotonic() - started


async def token_for(session: aiohttp.ClientSession, base: str) -> str:
    async with session.post(base + "/auth/token", json={"username": "alice", "password": PASSWORDS["alice"]}) as resp:
        assert resp.status == 200
        return (await resp.json())["access"]


@pytest.fixture
async def second_upstream(aiohttp_server) -> str:
    server = await aiohttp_server(create_upstream())
    return str(server.make_url("")).rstrip("/")


def limited(upstream: str, users_file, other_upstream: str | None = None, **limits: Any) -> dict[str, Any]:
    raw = base_config(upstream, users_file, limits=limits)
    if other_upstream is not None:
        raw["routes"] = [*raw["routes"], {"name": "other", "prefix": "/other", "upstream": other_upstream}]
    return raw


# -- one anonymous client stalling request bodies ----------------------------------------


async def test_stalled_uploads_cannot_starve_the_upstream_pool(
    gateway_process, upstream, second_upstream, users_file
):
    admin = free_port()
    # no per-address share or anonymous reserve here: the pool itself fills (test_trickled_uploads_... has them)
    raw = limited(upstream, users_file, second_upstream, upstream_connections=4, upstream_queue_timeout="1500ms",
                  body_idle_timeout="6s", upstream_client_share=1, upstream_reserved=0)
    raw["admin"] = {"host": "127.0.0.1", "port": admin}
    port = gateway_process(raw)
    base = f"http://127.0.0.1:{port}"
    attackers = [await stalled_upload(port) for _ in range(12)]
    try:
        async with visitor_session() as visitor:
            token = await token_for(visitor, base)
            auth = {"Authorization": f"Bearer {token}"}
            # Another upstream is untouched by the stalled pool of the first.
            status, _, took = await timed_get(visitor, base + "/other/x", headers=auth)
            assert status == 200 and took < SERVED_WITHIN
            # The stalled upstream answers a bounded 503, and readiness shows the queue meanwhile.
            waiting = asyncio.create_task(timed_get(visitor, base + "/api/x", headers=auth))
            async with aiohttp.ClientSession() as probe:

                async def saturated() -> bool:
                    async with probe.get(f"http://127.0.0.1:{admin}/readyz") as resp:
                        return resp.status == 503 and (await resp.json())["code"] == "upstream_busy"

                await eventually(saturated, "/readyz to report the busy upstream", timeout=5)
            status, body, took = await waiting
            assert (status, body["code"]) == (503, "upstream_busy") and took < SERVED_WITHIN
            # The stalled bodies time out (408) and free the pool: the same upstream serves again.
            for reader, _ in attackers[:4]:
                status, headers, body = await read_answer(reader)
                assert status == 408 and json.loads(body)["code"] == "body_timeout"
            status, _, took = await timed_get(visitor, base + "/api/x", headers=auth)
            assert status == 200
    finally:
        for _, writer in attackers:
            writer.close()
    log = gateway_process.log(port)
    assert '"code": "body_timeout"' in log and "Traceback" not in log


async def test_trickled_uploads_from_two_addresses_cannot_take_an_origins_slots(gateway_process, upstream, users_file):
    # 8 slots; an address may hold 2 (0.25), anonymous requests at most 6 (0.25 reserved for tokens)
    raw = limited(upstream, users_file, upstream_connections=8, upstream_queue_timeout="1500ms",
                  upstream_client_share=0.25, upstream_reserved=0.25, body_idle_timeout="6s",
                  body_min_rate=100, body_rate_grace="8s", max_requests_per_client=50)
    port = gateway_process(raw)
    base = f"http://127.0.0.1:{port}"
    attackers = []

    async def trickle(writer: asyncio.StreamWriter) -> None:  # a byte every 2 s: never idle for body_idle_timeout
        try:
            while True:
                await asyncio.sleep(2)
                writer.write(b"x")
                await writer.drain()
        except (ConnectionError, RuntimeError):
            return

    for source in ("127.0.0.1", THIRD):
        for _ in range(5):
            reader, writer = await connect(port, source)
            writer.write(b"POST /public/upload HTTP/1.1\r\nHost: gw\r\nContent-Length: 1000000\r\n\r\nx")
            await writer.drain()
            attackers.append((reader, writer, asyncio.create_task(trickle(writer))))
    started = time.monotonic()
    try:
        async with visitor_session() as visitor:
            token = await token_for(visitor, base)
            await asyncio.sleep(0.5)  # the uploads hold what they can
            status, _, took = await timed_get(visitor, base + "/api/x", headers={"Authorization": f"Bearer {token}"})
            assert status == 200 and took < SERVED_WITHIN
            assert time.monotonic() - started < 8, "served before the rate limit cut anything"
        # each upload is cut: 408 body_too_slow once it falls under body_min_rate past the grace,
        # or 503 upstream_busy for those that never got a slot
        codes = []
        for reader, _, _ in attackers:
            status, _, body = await read_answer(reader, timeout=20)
            codes.append((status, json.loads(body)["code"]))
        assert set(codes) <= {(408, "body_too_slow"), (503, "upstream_busy")}, codes
        assert codes.count((408, "body_too_slow")) == 4  # two per address held slots, no more
        assert time.monotonic() - started < 8 + SERVED_WITHIN
    finally:
        for _, writer, task in attackers:
            task.cancel()
            writer.close()
    log = gateway_process.log(port)
    assert '"code": "body_too_slow"' in log and "Traceback" not in log


async def test_one_address_is_capped_in_concurrent_requests(gateway_process, upstream, users_file):
    port = gateway_process(limited(upstream, users_file, max_requests_per_client=5, body_idle_timeout="30s"))
    base = f"http://127.0.0.1:{port}"
    attackers = [await stalled_upload(port) for _ in range(5)]
    try:
        await asyncio.sleep(0.5)  # the five are in progress
        reader, writer = await stalled_upload(port)
        status, headers, body = await read_answer(reader)
        writer.close()
        assert status == 429 and headers["retry-after"] == "1"
        assert json.loads(body) == {"detail": "Too many requests in progress from this address", "code": "too_many_requests"}
        async with visitor_session() as visitor:
            status, body, took = await timed_get(visitor, base + "/public/x")
            assert status == 200 and took < SERVED_WITHIN
    finally:
        for _, writer in attackers:
            writer.close()


# -- idle and slow connections ----------------------------------------------------------


async def test_slow_and_idle_connections_are_closed(gateway_process, upstream, users_file):
    port = gateway_process(limited(upstream, users_file, head_timeout="1s", keepalive_timeout="4s"))
    silent_reader, _ = await connect(port)
    slow_reader, slow_writer = await connect(port)
    slow_writer.write(b"GET /public/x HTTP/1.1\r\nHost: gw\r\n")

    async def trickle() -> None:
        for _ in range(40):
            await asyncio.sleep(0.2)
            slow_writer.write(b"X-A: b\r\n")

    trickling = asyncio.create_task(trickle())
    try:
        status, _, body = await read_answer(slow_reader, timeout=8)  # head_timeout, not the trickle, decides
        assert status == 408 and json.loads(body)["code"] == "request_timeout"
        assert await closed_by_peer(slow_reader, timeout=5)
        assert await closed_by_peer(silent_reader, timeout=5)
    finally:
        trickling.cancel()
        slow_writer.close()
    # A keep-alive connection outlives the head timeout between requests, then closes when idle too long.
    reader, writer = await connect(port, VISITOR)
    request = b"GET /public/x HTTP/1.1\r\nHost: gw\r\n\r\n"
    writer.write(request)
    assert (await read_answer(reader))[0] == 200
    await asyncio.sleep(2)
    writer.write(request)
    assert (await read_answer(reader))[0] == 200
    started = time.monotonic()
    assert await closed_by_peer(reader, timeout=15)
    assert time.monotonic() - started > 2  # closed by the keep-alive timeout, not the head timeout
    writer.close()


async def test_connection_caps_per_address_and_overall(gateway_process, upstream, users_file):
    admin = free_port()
    raw = limited(upstream, users_file, max_connections=12, max_connections_per_client=8, head_timeout="30s")
    raw["admin"] = {"host": "127.0.0.1", "port": admin}
    port = gateway_process(raw)
    held = [await connect(port) for _ in range(8)]
    try:
        reader, writer = await connect(port)
        writer.write(b"GET /public/x HTTP/1.1\r\nHost: gw\r\n\r\n")
        status, _, body = await read_answer(reader)
        assert (status, json.loads(body)["code"]) == (429, "too_many_client_connections")
        assert await closed_by_peer(reader, timeout=5)
        writer.close()
        async with visitor_session() as visitor:  # another address still gets in
            status, _, took = await timed_get(visitor, f"http://127.0.0.1:{port}/public/x")
            assert status == 200 and took < SERVED_WITHIN
        held += [await connect(port, THIRD) for _ in range(4)]  # 12: the process is full
        async with aiohttp.ClientSession() as probe:

            async def full() -> bool:  # once the process has accepted them all
                async with probe.get(f"http://127.0.0.1:{admin}/readyz") as resp:
                    return resp.status == 503 and (await resp.json())["code"] == "too_many_connections"

            await eventually(full, "/readyz to report the full process", timeout=10)
            async with probe.get(f"http://127.0.0.1:{admin}/metrics") as resp:
                assert "gateway_open_connections 12.0" in await resp.text()
        reader, writer = await connect(port, VISITOR)
        writer.write(b"GET /public/x HTTP/1.1\r\nHost: gw\r\n\r\n")
        status, headers, body = await read_answer(reader)
        assert (status, json.loads(body)["code"]) == (503, "too_many_connections")
        writer.close()
    finally:
        for _, writer in held:
            writer.close()
    log = gateway_process.log(port)
    assert "open files limit (RLIMIT_NOFILE)" in log


# -- large heads --------------------------------------------------------------------------


@pytest.mark.parametrize("head,status,code", [
    (b"".join(b"X-Big-%d: %s\r\n" % (i, b"v" * 7000) for i in range(6)), 431, "headers_too_large"),  # 42 KB in total
    (b"".join(b"X-H%d: v\r\n" % i for i in range(150)), 431, "headers_too_large"),  # too many lines
    (b"X-Long: " + b"v" * 10000 + b"\r\n", 431, "headers_too_large"),  # one line too long
    (None, 414, "uri_too_long"),
])
async def test_large_heads_are_refused_in_json(gateway_process, upstream, users_file, head, status, code):
    port = gateway_process(limited(upstream, users_file))
    reader, writer = await connect(port)
    if head is None:
        writer.write(b"GET /public/" + b"a" * 10000 + b" HTTP/1.1\r\nHost: gw\r\n\r\n")
    else:
        writer.write(b"GET /public/x HTTP/1.1\r\nHost: gw\r\n" + head + b"\r\n")
    got, headers, body = await read_answer(reader)
    writer.close()
    assert got == status and headers["content-type"].startswith("application/json")
    assert json.loads(body)["code"] == code


async def test_a_huge_head_is_cut_before_it_is_complete(gateway_process, upstream, users_file):
    """The head is refused once it passes max_head_size, without waiting for (or buffering) the rest."""
    port = gateway_process(limited(upstream, users_file))
    reader, writer = await connect(port)
    writer.write(b"GET /public/x HTTP/1.1\r\nHost: gw\r\n")
    try:
        for i in range(200):  # up to 1.6 MB, never finished
            writer.write(b"X-F%d: %s\r\n" % (i, b"v" * 8000))
            await writer.drain()
            if reader.at_eof() or len(reader._buffer) > 0:  # type: ignore[attr-defined]
                break
    except ConnectionError:
        pass
    status, _, body = await read_answer(reader)
    writer.close()
    assert status == 431 and json.loads(body)["code"] == "headers_too_large"
    async with visitor_session() as visitor:
        status, _, _ = await timed_get(visitor, f"http://127.0.0.1:{port}/public/x")
        assert status == 200


async def test_a_trusted_proxy_has_no_per_address_connection_cap(gateway_process, upstream, users_file):
    raw = limited(upstream, users_file, max_connections=20, max_connections_per_client=3, head_timeout="30s")
    raw["trusted_proxies"] = [VISITOR]  # the load balancer
    port = gateway_process(raw)
    held = []
    try:
        # the load balancer's keep-alive connections carry many clients: more than 3 are all served
        for i in range(6):
            reader, writer = await connect(port, VISITOR)
            held.append((reader, writer))
            writer.write(f"GET /public/x HTTP/1.1\r\nHost: gw\r\nX-Forwarded-For: 203.0.113.{i}\r\n\r\n".encode())
            status, _, _ = await read_answer(reader)
            assert status == 200, i
        # any other address keeps its cap
        for _ in range(3):
            held.append(await connect(port, THIRD))
        reader, writer = await connect(port, THIRD)
        held.append((reader, writer))
        writer.write(b"GET /public/x HTTP/1.1\r\nHost: gw\r\n\r\n")
        status, _, body = await read_answer(reader)
        assert (status, json.loads(body)["code"]) == (429, "too_many_client_connections")
    finally:
        for _, writer in held:
            writer.close()


@pytest.mark.parametrize("limits,expected", [
    ({"head_timeout": "0s"}, "limits: head_timeout: must be positive"),
    ({"max_connections": 10, "max_connections_per_client": 20}, "cannot exceed max_connections"),
    ({"max_head_size": 100}, "limits.max_head_size"),
    ({"bogus": 1}, "limits.bogus: unknown key"),
])
def test_limits_config_is_validated(upstream, users_file, tmp_path, limits, expected):
    from gateway.config import ConfigError, parse_config

    with pytest.raises(ConfigError) as caught:
        parse_config(limited(upstream, users_file, **limits), tmp_path)
    assert any(expected in problem for problem in caught.value.problems), caught.value.problems


def test_limits_have_production_defaults(upstream, users_file, tmp_path):
    from gateway.config import parse_config

    limits = parse_config(base_config(upstream, users_file), tmp_path).limits
    assert limits.head_timeout == 10 and limits.keepalive_timeout == 75 and limits.max_head_size == 32 * 1024


def test_a_reload_cannot_change_the_limits(upstream, users_file, tmp_path):
    from gateway.config import parse_config
    from gateway.server.reload import restart_only_changes

    running = parse_config(base_config(upstream, users_file), tmp_path)
    changed = parse_config(limited(upstream, users_file, max_connections=500), tmp_path)
    assert restart_only_changes(running, changed) == [
        "limits: changing them needs a restart (connection and pool bounds are set at start)"]
    assert restart_only_changes(running, parse_config(base_config(upstream, users_file), tmp_path)) == []


# -- the public listener's own handler (server/front.py) ---------------------------------


@pytest.mark.parametrize(("expect", "first"), [("100-continue", 100), ("something-else", 417)])
async def test_expect_is_answered_before_the_body_as_the_application_did(gateway_process, upstream, users_file,
                                                                         expect, first):
    """``gateway run`` serves from aiohttp's low-level server: ``Expect`` still gets its interim 100 Continue before the
    body is sent (then the proxied answer), or aiohttp's 417 for an expectation it does not know."""
    port = gateway_process(base_config(upstream, users_file))
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(f"POST /public/x HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: {expect}\r\n\r\n".encode())
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), BOUND)  # before any body byte is sent
        assert line.split()[1] == str(first).encode(), line
        if first == 100:
            assert await asyncio.wait_for(reader.readline(), BOUND) == b"\r\n"
            writer.write(b"hello")
            await writer.drain()
            status, _, _ = await read_answer(reader)
            assert status == 200
    finally:
        writer.close()
