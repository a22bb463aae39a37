"""Redis coming back: recovery at once after a restart, no refresh applied after its 503, and a Redis
that lost its data (restarted without persistence) never bringing a logged-out token back."""
from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import redis
import yaml

from gateway.app import create_app
from gateway.auth.jose import peek_claims as jose_claims
from gateway.stores import MemoryStore
from gateway.stores.redis import RedisStore
from tests.conftest import ROOT, RedisServer, base_config, bearer, login

CONCURRENT = 100


async def test_every_pooled_connection_recovers_on_first_use_after_a_restart(make_gateway, tmp_path):
    redis_server = RedisServer(tmp_path, "--appendonly", "yes", "--appendfsync", "always")  # the session survives
    redis_server.start()
    try:
        await _recovers_on_first_use(make_gateway, redis_server)
    finally:
        redis_server.stop()


async def _recovers_on_first_use(make_gateway, redis_server: RedisServer) -> None:
    # 5 s per operation: a hundred reconnections at once on a loaded machine are slow, not failed (what is tested)
    gateway = await make_gateway(store=RedisStore(redis_server.url, timeout=5.0))
    pair = await login(gateway)

    async def burst() -> Counter[int]:
        answers = await asyncio.gather(*(gateway.get("/api/x", headers=bearer(pair["access"])) for _ in range(CONCURRENT)))
        return Counter(resp.status for resp in answers)

    assert await burst() == Counter({200: CONCURRENT})  # the pool now holds many connections
    redis_server.stop()
    redis_server.start()  # every pooled connection is now dead
    assert await burst() == Counter({200: CONCURRENT})  # each is replaced on first use, no 503


class StallingLink:
    """A TCP relay to Redis that can stall: what the gateway sends meanwhile is delivered when it resumes,
    even if the gateway has given up and closed its side (a congested or briefly partitioned network)."""

    def __init__(self, redis_port: int) -> None:
        self.redis_port = redis_port
        self.flowing = asyncio.Event()
        self.flowing.set()
        self.tasks: set[asyncio.Task[None]] = set()
        self.server: asyncio.Server | None = None

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._link, "127.0.0.1", 0)
        return f"redis://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/0"

    async def _link(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        redis_reader, redis_writer = await asyncio.open_connection("127.0.0.1", self.redis_port)

        async def to_redis() -> None:
            while data := await client_reader.read(65536):
                await self.flowing.wait()
                redis_writer.write(data)
                await redis_writer.drain()
            await asyncio.sleep(0.5)  # let Redis run what was delivered before hanging up
            redis_writer.close()

        async def to_client() -> None:
            while data := await redis_reader.read(65536):
                if not client_writer.is_closing():
                    client_writer.write(data)
            client_writer.close()

        for job in (to_redis(), to_client()):
            task = asyncio.create_task(job)
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def close(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        if self.server is not None:
            self.server.close()


async def test_a_refresh_answered_503_during_a_stall_is_not_applied_later(make_gateway, redis_server, redis_url):
    link = StallingLink(redis_server.port)
    url = await link.start()
    try:
        gateway = await make_gateway(store=RedisStore(url, timeout=0.3), tokens={"refresh_grace": "1s"})
        first = await login(gateway)
        resp = await gateway.post("/auth/token/refresh", json={"refresh": first["refresh"]})  # Redis has the script now
        pair = await resp.json()
        link.flowing.clear()  # the stall
        resp = await asyncio.wait_for(gateway.post("/auth/token/refresh", json={"refresh": pair["refresh"]}), 10)
        assert resp.status == 503 and (await resp.json())["code"] == "store_unavailable"
        await asyncio.sleep(0.5)
        link.flowing.set()  # the rotation the client was told failed reaches Redis now
        await asyncio.sleep(1.5)  # past refresh_grace: had it been applied, the retry below would be a reuse
        resp = await gateway.post("/auth/token/refresh", json={"refresh": pair["refresh"]})
        body = await resp.json()
        assert resp.status == 200, body
        resp = await gateway.get("/api/x", headers=bearer(body["access"]))
        assert resp.status == 200
    finally:
        await link.close()


async def _refresh_while_redis_stopped(gateway, redis_server: RedisServer, token: str, stall: float):
    """SIGSTOP the redis-server itself, refresh at once, SIGCONT it ``stall`` seconds after the stop."""
    assert redis_server.proc is not None
    pid = redis_server.proc.pid
    stopped = time.monotonic()
    os.kill(pid, signal.SIGSTOP)
    resume = asyncio.get_running_loop().call_later(stall, os.kill, pid, signal.SIGCONT)
    try:
        resp = await asyncio.wait_for(gateway.post("/auth/token/refresh", json={"refresh": token}), 10)
        return resp.status, await resp.json()
    finally:
        await asyncio.sleep(max(0.0, stopped + stall + 0.3 - time.monotonic()))  # Redis ran what was queued
        resume.cancel()
        os.kill(pid, signal.SIGCONT)


async def test_a_stall_while_redis_clock_is_read_skews_no_later_deadline(make_gateway, redis_server, redis_url):
    """The deadline of a rotation never comes from a clock reading taken inside an earlier stall.

    A first refresh meets a redis-server stopped for 1.6 s (under store.timeout 2 s): whatever
    the gateway reads of Redis's clock then is late by up to the stall. A second refresh meets a
    stop of 2.4 s: the client is answered 503 at 2 s, and the rotation, run by Redis when it
    resumes, must be refused; the client's retry after refresh_grace then succeeds.
    """
    gateway = await make_gateway(store=RedisStore(redis_url, timeout=2.0), tokens={"refresh_grace": "1s"})
    pair = await login(gateway)
    status, body = await _refresh_while_redis_stopped(gateway, redis_server, pair["refresh"], 1.6)
    token = body["refresh"] if status == 200 else pair["refresh"]

    status, body = await _refresh_while_redis_stopped(gateway, redis_server, token, 2.4)
    assert status == 503 and body["code"] == "store_unavailable", body
    fid = jose_claims(token)["fid"]
    admin = redis.Redis(port=redis_server.port, decode_responses=True)
    try:
        assert admin.hget(f"gw:{{{fid}}}:fam", "current") == jose_claims(token)["jti"], "the 503 rotation was applied"
    finally:
        admin.close()
    await asyncio.sleep(1.2)  # past refresh_grace: had it been applied, the retry below would be a reuse
    resp = await gateway.post("/auth/token/refresh", json={"refresh": token})
    body = await resp.json()
    assert resp.status == 200, body
    resp = await gateway.get("/api/x", headers=bearer(body["access"]))
    assert resp.status == 200


async def status_of(client, access: str) -> tuple[int, str]:
    resp = await client.get("/api/x", headers=bearer(access))
    body = await resp.json() if resp.content_type == "application/json" else {}
    return resp.status, body.get("code", "")


async def test_a_redis_restarted_without_its_data_brings_no_logged_out_token_back(make_gateway, aiohttp_client,
                                                                                   make_config, own_redis):
    """Instance A asks Redis on every request, instance B runs the revocation cache; both on one Redis."""
    a = await make_gateway(store=RedisStore(own_redis.url, timeout=1.0))
    b = await aiohttp_client(create_app(make_config(store={"backend": "redis", "url": own_redis.url,
                                                           "timeout": "1s", "revocation_cache": "60s"})))
    logged_out, live = await login(a), await login(a, "bob")
    resp = await a.post("/auth/logout", json={"refresh": logged_out["refresh"]}, headers=bearer(logged_out["access"]))
    assert resp.status == 200
    for gateway in (a, b):
        assert await status_of(gateway, logged_out["access"]) == (401, "token_revoked")
        for _ in range(2):  # at B the second answer comes from its cache
            assert await status_of(gateway, live["access"]) == (200, "")

    await asyncio.to_thread(own_redis.stop)
    await asyncio.to_thread(own_redis.start)  # empty: the deny list and every family are gone

    for gateway in (a, b):
        # the logout is not undone, and a token issued before the loss is refused too (its session is gone)
        for _ in range(3):
            assert await status_of(gateway, logged_out["access"]) == (401, "token_revoked")
            assert await status_of(gateway, live["access"]) in {(401, "token_revoked"), (503, "store_unavailable")}
        assert await status_of(gateway, live["access"]) == (401, "token_revoked")
        resp = await gateway.post("/auth/token/refresh", json={"refresh": live["refresh"]})
        assert resp.status == 401
    fresh = await login(b, "bob")  # users log in again, and that works everywhere
    for gateway in (a, b):
        assert await status_of(gateway, fresh["access"]) == (200, "")
    resp = await a.post("/auth/token/refresh", json={"refresh": fresh["refresh"]})
    assert resp.status == 200


async def test_a_restarted_memory_store_brings_no_logged_out_token_back(aiohttp_client, make_config):
    config = make_config()
    before = await aiohttp_client(create_app(config, store=MemoryStore()))
    pair = await login(before)
    resp = await before.post("/auth/logout", json={"refresh": pair["refresh"]}, headers=bearer(pair["access"]))
    assert resp.status == 200
    after = await aiohttp_client(create_app(config, store=MemoryStore()))  # the process restarted
    assert await status_of(after, pair["access"]) == (401, "token_revoked")
    fresh = await login(after)
    assert await status_of(after, fresh["access"]) == (200, "")


def check_probe(tmp_path: Path, upstream: str, users_file: Path, url: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(base_config(upstream, users_file, store={"backend": "redis", "url": url})))
    return subprocess.run([sys.executable, "-m", "gateway", "check", str(path), "--probe"],
                          capture_output=True, text=True, cwd=ROOT, timeout=60)


def test_check_probe_warns_when_redis_keeps_nothing_across_a_restart(tmp_path, upstream, users_file, own_redis):
    result = check_probe(tmp_path, upstream, users_file, own_redis.url)
    assert result.returncode == 0, result.stderr
    assert "probe store: OK" in result.stdout
    assert "warning: store: Redis has no persistence" in result.stderr

    durable = RedisServer(tmp_path / "aof", "--appendonly", "yes")
    (tmp_path / "aof").mkdir()
    durable.start()
    try:
        result = check_probe(tmp_path, upstream, users_file, durable.url)
        assert result.returncode == 0 and "probe store: OK" in result.stdout
        assert "persistence" not in result.stderr
    finally:
        durable.stop()

    locked = RedisServer(tmp_path / "locked", "--rename-command", "CONFIG", "")  # CONFIG disabled: cannot tell
    (tmp_path / "locked").mkdir()
    locked.start()
    try:
        result = check_probe(tmp_path, upstream, users_file, locked.url)
        assert result.returncode == 0 and "probe store: OK" in result.stdout, result.stderr
        assert "persistence" not in result.stderr
    finally:
        locked.stop()

    own_redis.stop()
    result = check_probe(tmp_path, upstream, users_file, own_redis.url)
    assert result.returncode == 1 and "probe store: FAILED" in result.stderr


async def test_start_up_warns_when_redis_keeps_nothing_across_a_restart(aiohttp_client, make_config, own_redis,
                                                                         caplog):
    caplog.set_level(logging.WARNING, "gateway.store")
    await aiohttp_client(create_app(make_config(store={"backend": "redis", "url": own_redis.url})))
    assert any("Redis has no persistence" in r.getMessage() for r in caplog.records)
