"""Shared fixtures: a throwaway redis-server, a real upstream, and gateways built from config dicts.

Nothing here is a mock: Redis is a real server on a free port, the upstream a
real aiohttp server on loopback, and the gateway the real app on a real socket.
"""
from __future__ import annotations

import copy
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable, Iterator

import pytest
import redis
import yaml
from aiohttp.test_utils import TestClient, TestServer

from gateway.app import create_app
from gateway.config import GatewayConfig, parse_config
from gateway.example_upstream import create_upstream
from gateway.sources.users import hash_password
from gateway.stores import MemoryStore, Store
from gateway.stores.redis import RedisStore
from tests.ops_support import GatedUpstream

ROOT = Path(__file__).resolve().parent.parent
SECRET = "test-secret-that-is-long-enough-0123456789"
PASSWORDS = {"alice": "alice-password", "bob": "bob-password", "mallory": "mallory-password"}
CLAIMS = {
    "alice": {"roles": ["admin", "user"], "scope": "read write", "email": "alice@example.com", "tenant": "acme"},
    "bob": {"roles": ["user"], "scope": "read", "email": "bob@example.com", "tenant": "acme"},
    "mallory": {"roles": ["user"], "scope": "read", "email": "mallory@example.com", "tenant": "evil\r\nX-Injected: 1"},
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port}")


class RedisServer:
    """A throwaway redis-server the tests own: start, stop and restart it at will."""

    def __init__(self, tmp: Path, *args: str) -> None:
        self.port = free_port()
        self.tmp = tmp
        self.args = args  # extra redis-server options, e.g. ("--appendonly", "yes") to survive a restart
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server is not installed: run the README's test command (make test)")
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(self.tmp),
             *self.args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port)

    def stop(self) -> None:
        if self.proc:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, decode_responses=True)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """A clean database on the session's throwaway server (restarted if a test stopped it)."""
    if redis_server.proc is None:
        redis_server.start()
    redis_server.client().flushall()
    return redis_server.url


@pytest.fixture(scope="session")
def users_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Hashing is slow on purpose, so the test users are hashed once per session."""
    users = {name: {"password_hash": hash_password(pw), "claims": CLAIMS[name]} for name, pw in PASSWORDS.items()}
    path = tmp_path_factory.mktemp("users") / "users.yaml"
    path.write_text(yaml.safe_dump({"users": users}))
    return path


@pytest.fixture
async def upstream(aiohttp_server: Callable[..., Awaitable[TestServer]]) -> str:
    """The example upstream (echoes path, query, headers, body size) on a real socket."""
    server = await aiohttp_server(create_upstream())
    return str(server.make_url("")).rstrip("/")


def base_config(upstream: str, users_file: Path, **overrides: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "tokens": {"secret": SECRET, "issuer": "test-gw", "audience": "test-clients", "leeway": "0s"},
        "users_file": str(users_file),
        "routes": [
            {"name": "admin", "prefix": "/admin", "upstream": upstream, "require": {"roles_any": ["admin"]},
             "headers": {"X-User-Id": "sub", "X-User-Roles": "roles"}},
            {"name": "api", "prefix": "/api", "upstream": upstream,
             "headers": {"X-User-Id": "sub", "X-User-Roles": "roles", "X-User-Email": "email", "X-Auth-Tenant": "tenant"}},
            {"name": "maybe", "prefix": "/maybe", "upstream": upstream, "auth": "optional", "headers": {"X-User-Id": "sub"}},
            {"name": "public", "prefix": "/public", "upstream": upstream, "auth": "none", "strip_prefix": True},
        ],
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(raw.get(key), dict):
            raw[key] = {**raw[key], **value}
        else:
            raw[key] = value
    return raw


@pytest.fixture
def make_config(upstream: str, users_file: Path, tmp_path: Path) -> Callable[..., GatewayConfig]:
    def make(**overrides: Any) -> GatewayConfig:
        return parse_config(copy.deepcopy(base_config(upstream, users_file, **overrides)), tmp_path)

    return make


GatewayFactory = Callable[..., Awaitable[TestClient]]


@pytest.fixture
async def make_gateway(
    aiohttp_client: Callable[..., Awaitable[TestClient]], make_config: Callable[..., GatewayConfig]
) -> GatewayFactory:
    """A running gateway (real app, real socket) built from ``base_config`` plus overrides."""

    async def make(store: Store | None = None, **overrides: Any) -> TestClient:
        return await aiohttp_client(create_app(make_config(**overrides), store=store))

    return make


@pytest.fixture
async def gateway(make_gateway: GatewayFactory) -> TestClient:
    return await make_gateway()


async def login(client: TestClient, user: str = "alice", path: str = "/auth/token") -> dict[str, Any]:
    resp = await client.post(path, json={"username": user, "password": PASSWORDS[user]})
    assert resp.status == 200, await resp.text()
    return await resp.json()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[Store]:
    """Each store implementation, started; the contract suite runs against both."""
    if request.param == "memory":
        instance: Store = MemoryStore()
    else:
        instance = RedisStore(request.getfixturevalue("redis_url"), prefix="test:")
    await instance.start()
    yield instance
    await instance.close()


def gateway_command() -> list[str]:
    """How end-to-end tests start the real gateway: the installed CLI of this interpreter."""
    return [sys.executable, "-m", "gateway"]


class GatewayProcesses:
    """Starts ``gateway run`` subprocesses from config dicts; calling it returns the port.

    ``procs[port]`` is the process, ``config_path(port)`` its config file (rewrite
    it to test a reload) and ``log(port)`` everything it printed. One worker
    unless a test passes ``--workers``.
    """

    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.procs: dict[int, subprocess.Popen[bytes]] = {}

    def __call__(self, raw: dict[str, Any], *extra_args: str) -> int:
        port = free_port()
        raw = {**raw, "listen": {"host": "127.0.0.1", "port": port}}
        path = self.config_path(port)
        path.write_text(yaml.safe_dump(raw))
        with open(self.tmp / f"gateway-{port}.log", "wb") as log:
            proc = subprocess.Popen([*gateway_command(), "run", "--config", str(path), *extra_args],
                                    stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
                                    env={**os.environ, "GATEWAY_WORKERS": "1"})
        self.procs[port] = proc
        deadline = time.monotonic() + 15
        while not _listening(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the gateway did not start (exit {proc.poll()}):\n{self.log(port)}")
            time.sleep(0.05)
        return port

    def config_path(self, port: int) -> Path:
        return self.tmp / f"gateway-{port}.yaml"

    def log(self, port: int) -> str:
        return (self.tmp / f"gateway-{port}.log").read_text(errors="replace")

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def gateway_process(tmp_path: Path) -> Iterator[GatewayProcesses]:
    """Start ``gateway run`` subprocesses from config dicts; returns their port. Stopped after the test."""
    processes = GatewayProcesses(tmp_path)
    yield processes
    processes.stop_all()


@pytest.fixture
async def gated(aiohttp_server: Callable[..., Awaitable[TestServer]]) -> AsyncIterator[GatedUpstream]:
    """An upstream that holds every request until the test releases it (in-flight requests on demand)."""
    upstream = GatedUpstream()
    server = await aiohttp_server(upstream.app())
    upstream.url = str(server.make_url("")).rstrip("/")
    yield upstream
    upstream.release.set()
