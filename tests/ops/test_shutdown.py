"""SIGTERM: /readyz 503, no new connections, in-flight requests finish (up to the drain timeout), clean exit."""
from __future__ import annotations

import asyncio
import signal
import socket

import aiohttp
import pytest
import yaml

from tests.conftest import ROOT, base_config, free_port, gateway_command
from tests.support.processes import BOUND, GatedUpstream, eventually
from tests.support.websockets import ws_routes


def refuses(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


async def status_of(session: aiohttp.ClientSession, url: str) -> int | None:
    try:
        async with session.get(url) as resp:
            return resp.status
    except aiohttp.ClientError:
        return None


def slow_config(gated: GatedUpstream, users_file, **shutdown) -> dict:
    return base_config(gated.url, users_file, shutdown=shutdown,
                       routes=[{"name": "slow", "prefix": "/slow", "upstream": gated.url, "auth": "none"}])


async def test_sigterm_drains_in_flight_requests(gateway_process, gated, users_file, redis_url):
    admin = free_port()
    raw = slow_config(gated, users_file, drain_timeout="15s", readiness_delay="2s")
    raw.update(admin={"host": "127.0.0.1", "port": admin}, store={"backend": "redis", "url": redis_url})
    port = gateway_process(raw)
    proc = gateway_process.procs[port]
    main, admin_url = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{admin}"
    async with aiohttp.ClientSession() as client, aiohttp.ClientSession() as probe:
        in_flight = asyncio.create_task(client.get(main + "/slow/x"))
        await asyncio.wait_for(gated.started.wait(), BOUND)
        proc.send_signal(signal.SIGTERM)

        async def draining() -> bool:
            return await status_of(probe, admin_url + "/readyz") == 503
        await eventually(draining, "/readyz to answer 503")
        assert await status_of(probe, main + "/readyz") == 503  # within readiness_delay the listener still answers
        await eventually(lambda: asyncio.sleep(0, refuses(port)), "the listener to close")
        assert not in_flight.done()

        gated.release.set()
        resp = await asyncio.wait_for(in_flight, BOUND)
        assert resp.status == 200 and await resp.read() == gated.body
        assert resp.headers["Connection"] == "close"
    assert await asyncio.to_thread(proc.wait, BOUND) == 0
    log = gateway_process.log(port)
    assert "shutting down: draining 1 in-flight request(s)" in log and "gateway stopped" in log
    for trouble in ("Traceback", "Unclosed", "was destroyed", "drain timeout"):
        assert trouble not in log


async def test_requests_past_the_drain_timeout_are_cut(gateway_process, gated, users_file):
    port = gateway_process(slow_config(gated, users_file, drain_timeout="0.5s"))
    proc = gateway_process.procs[port]
    async with aiohttp.ClientSession() as client:
        in_flight = asyncio.create_task(client.get(f"http://127.0.0.1:{port}/slow/x"))
        await asyncio.wait_for(gated.started.wait(), BOUND)
        proc.send_signal(signal.SIGTERM)
        with pytest.raises(aiohttp.ClientError):
            await asyncio.wait_for(in_flight, BOUND)  # an error, not a hang
    assert await asyncio.to_thread(proc.wait, BOUND) == 0
    log = gateway_process.log(port)
    assert "drain timeout: cutting 1 request(s)" in log and "Traceback" not in log


async def test_idle_gateway_exits_at_once_and_removes_its_pid_file(gateway_process, users_file, upstream, tmp_path):
    pid_file = tmp_path / "gateway.pid"
    port = gateway_process(base_config(upstream, users_file), "--pid-file", str(pid_file))
    proc = gateway_process.procs[port]
    assert int(pid_file.read_text()) == proc.pid
    proc.send_signal(signal.SIGINT)
    assert await asyncio.to_thread(proc.wait, BOUND) == 0
    assert not pid_file.exists()


async def test_a_taken_port_is_a_clear_error_and_a_clean_exit(users_file, upstream, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        raw = {**base_config(upstream, users_file), "listen": {"host": "127.0.0.1", "port": port}}
        path = tmp_path / "g.yaml"
        path.write_text(yaml.safe_dump(raw))
        proc = await asyncio.create_subprocess_exec(*gateway_command(), "run", "--config", str(path), cwd=ROOT,
                                                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        out, _ = await asyncio.wait_for(proc.communicate(), BOUND)
    text = out.decode()
    assert proc.returncode == 1 and "cannot serve" in text
    assert "Traceback" not in text and "Unclosed" not in text


async def test_open_websockets_are_closed_with_1001_and_do_not_hold_the_drain(gateway_process, ws_upstream, users_file):
    """A socket lives as long as its peers like; the drain closes it (going away) instead of waiting it out."""
    _, url = ws_upstream
    raw = base_config(url, users_file, routes=ws_routes(url), shutdown={"drain_timeout": "120s"})
    port = gateway_process(raw)
    proc = gateway_process.procs[port]
    async with aiohttp.ClientSession() as s:
        async with s.post(f"http://127.0.0.1:{port}/auth/token", json={"username": "bob", "password": "bob-password"}) as r:
            token = (await r.json())["access"]
        async with s.ws_connect(f"http://127.0.0.1:{port}/ws?access_token={token}") as ws:
            await ws.send_str("hello")
            assert await ws.receive_str(timeout=BOUND) == "hello"
            proc.send_signal(signal.SIGTERM)
            msg = await ws.receive(timeout=BOUND)
            assert msg.type is aiohttp.WSMsgType.CLOSE and msg.data == 1001
    assert await asyncio.to_thread(proc.wait, BOUND) == 0  # long before the 120 s drain timeout
    assert "drain timeout" not in gateway_process.log(port)
