"""Shared fixtures: a throwaway redis-server, a real upstream, and gateways built from config dicts.

Nothing here is a mock: Redis is a real server on a free port, the upstream a
real aiohttp server on loopback, and the gateway the real app on a real socket.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable, Iterator

import pytest
import yaml
from aiohttp.test_utils import TestClient, TestServer

from gateway.app import create_app
from gateway.config import GatewayConfig, parse_config
from gateway.example_upstream import create_upstream
from gateway.observe import logs
from gateway.sources.users import hash_password
from gateway.stores import Store
from gateway.stores.redis import RedisStore
from tests.support.clock import memory_store
from tests.support.processes import (  # noqa: F401 (re-exported: tests import them from here)
    ROOT,
    GatedUpstream,
    GatewayProcesses,
    RedisServer,
    example_upstream,
    free_port,
    gateway_command,
    wait_for_port,
)
from tests.support.sources import Database, start_mariadb, start_postgres

SECRET = "test-secret-that-is-long-enough-0123456789"
PASSWORDS = {"alice": "alice-password", "bob": "bob-password", "mallory": "mallory-password"}
CLAIMS = {
    "alice": {"roles": ["admin", "user"], "scope": "read write", "email": "alice@example.com", "tenant": "acme"},
    "bob": {"roles": ["user"], "scope": "read", "email": "bob@example.com", "tenant": "acme"},
    "mallory": {"roles": ["user"], "scope": "read", "email": "mallory@example.com", "tenant": "evil\r\nX-Injected: 1"},
}


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test alone (no persistence), which it may stop and restart on the same port."""
    server = RedisServer(tmp_path)
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
def postgres() -> Iterator[Database]:
    """The session's own PostgreSQL (tests/support/sources.py; the identity-source and credential-store tests), started when a test first needs it."""
    db = start_postgres()
    yield db
    db.stop()


@pytest.fixture(scope="session")
def mariadb() -> Iterator[Database]:
    """The session's own MariaDB, started when a test first needs it."""
    db = start_mariadb()
    yield db
    db.stop()


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


@pytest.fixture(autouse=True)
def fresh_repeated_warnings() -> None:
    """Each test sees the first line of every repeated warning: none is held back by an earlier test."""
    logs._seen.clear()


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
        instance: Store = memory_store()  # on a clock the test moves (tests/support/clock.py: elapse)
    else:
        instance = RedisStore(request.getfixturevalue("redis_url"), prefix="test:")
    await instance.start()
    yield instance
    await instance.close()


@pytest.fixture
def gateway_process(tmp_path: Path) -> Iterator[GatewayProcesses]:
    """Start ``gateway run`` subprocesses from config dicts; returns their port. Stopped after the test."""
    processes = GatewayProcesses(tmp_path)
    yield processes
    processes.stop_all()


@pytest.fixture
def upstream_process(tmp_path: Path) -> Iterator[str]:
    """The example upstream as a process of its own (``example_upstream``): its URL. Stopped after the test."""
    upstream = example_upstream(tmp_path).start()
    yield upstream.url
    upstream.stop()


@pytest.fixture
async def gated(aiohttp_server: Callable[..., Awaitable[TestServer]]) -> AsyncIterator[GatedUpstream]:
    """An upstream that holds every request until the test releases it (in-flight requests on demand)."""
    upstream = GatedUpstream()
    server = await aiohttp_server(upstream.app())
    upstream.url = str(server.make_url("")).rstrip("/")
    yield upstream
    upstream.release.set()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--serial", choices=("include", "exclude", "only"), default="include",
                     help="tests marked serial (they measure time, memory or CPU and must not share the machine): "
                          "run them with the rest (include, the default), leave them out (exclude: the parallel pass "
                          "of make test) or run only them (only: its serial pass)")


def pytest_sessionstart(session: pytest.Session) -> None:
    """No run on stale extensions: a module edited after `make compiled` would be tested as it was (scripts/compile.py)."""
    from tests.support.compiled import compile_script

    if not (ROOT / "scripts" / "compile.py").exists():
        return  # mutmut's copy of the tree (make mutation runs it with GATEWAY_PURE=1)
    problems = compile_script().stale(ROOT)
    if problems:
        pytest.exit("stale compiled build: " + "; ".join(problems) + ": run `make compiled` or `make clean-compiled`", 3)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The layers: tests/unit and tests/http are quick; tests/ops and tests/browser are marked slow. --serial."""
    for item in items:
        if {"ops", "browser"} & set(item.path.relative_to(ROOT / "tests").parts[:1]):
            item.add_marker(pytest.mark.slow)
    mode = config.getoption("serial")
    if mode != "include":
        keep = [item for item in items if (item.get_closest_marker("serial") is not None) == (mode == "only")]
        if len(keep) < len(items):
            config.hook.pytest_deselected(items=[item for item in items if item not in keep])
            items[:] = keep


# Fixtures that several layers use, defined beside their helpers in tests/support.
from tests.support.redis_servers import cluster_node, sentinel  # noqa: E402, F401
from tests.support.websockets import ws_upstream  # noqa: E402, F401
