"""Audit events from a real gateway (make_gateway, memory store and real Redis) to a file sink and a real webhook receiver on a free port that
checks every delivery with docs/audit.md's own check: a full login, refresh, reuse, refusal and logout run with no
token or password in any line or body; no event for anonymous or admitted requests; one event per refusal when
nginx asks twice in decision mode; a hanging webhook never slows a request; a full queue and a dead webhook are
counted as dropped; shutdown gives up on a hanging webhook within its timeout."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable

import pytest
from aiohttp.test_utils import TestClient, TestServer

from gateway.app import create_app
from gateway.observe.metrics import METRICS
from gateway.stores import Store
from tests.conftest import PASSWORDS, GatewayFactory, bearer, free_port, login
from tests.support.audit import WEBHOOK_SECRET, Receiver, file_events
from tests.support.processes import eventually

WRONG_PASSWORD = "not-alices-password-9f3a"


@pytest.fixture
async def receiver(aiohttp_server: Callable[..., Awaitable[TestServer]]) -> AsyncIterator[tuple[Receiver, str]]:
    got = Receiver()
    server = await aiohttp_server(got.app())
    yield got, str(server.make_url("/events"))
    got.release.set()  # a hanging delivery ends with the test


def _audit(path: Path, url: str | None = None, **webhook: Any) -> dict[str, Any]:
    audit: dict[str, Any] = {"sink": "file", "path": str(path)}
    if url is not None:
        audit["webhook"] = {"url": url, "secret": WEBHOOK_SECRET, **webhook}
    return audit


def _dropped(client: TestClient, reason: str) -> float:
    return client.app[METRICS].registry.get_sample_value("gateway_audit_events_dropped_total", {"reason": reason}) or 0.0


async def test_a_full_session_is_audited_and_no_secret_reaches_any_line(
    make_gateway: GatewayFactory, receiver: tuple[Receiver, str], tmp_path: Path, store: Store
):
    """Memory and real Redis (the ``store`` fixture): the events come from the sessions, whichever store decides."""
    got, url = receiver
    path = tmp_path / "audit.jsonl"
    client = await make_gateway(store=store, tokens={"refresh_grace": "0s"}, audit=_audit(path, url))
    alice = await login(client)
    resp = await client.post("/auth/token", json={"username": "alice", "password": WRONG_PASSWORD})
    assert resp.status == 401
    assert (await client.get("/api/x")).status == 401  # anonymous: no event
    assert (await client.get("/api/x", headers=bearer(alice["access"]))).status == 200  # admitted: no event
    assert (await client.get("/public/x")).status == 200
    bob = await login(client, "bob")
    denied = await client.get("/admin/x", headers=bearer(bob["access"]))
    assert denied.status == 403
    assert (await client.get("/api/x", headers=bearer("not.a.token"))).status == 401
    rotated = await client.post("/auth/token/refresh", json={"refresh": alice["refresh"]})
    assert rotated.status == 200
    fresh = await rotated.json()
    reused = await client.post("/auth/token/refresh", json={"refresh": alice["refresh"]})
    assert (reused.status, (await reused.json())["code"]) == (401, "token_reused")
    revoked = await client.get("/api/x", headers=bearer(fresh["access"]))
    assert (revoked.status, (await revoked.json())["code"]) == (401, "token_revoked")
    assert (await client.post("/auth/logout", json={"refresh": bob["refresh"]})).status == 200

    events = file_events(path)
    assert [(e["event"], e["subject"], e["reason"]) for e in events] == [
        ("login.succeeded", "alice", None),
        ("login.failed", "alice", "invalid_credentials"),
        ("login.succeeded", "bob", None),
        ("credential.refused", "bob", "insufficient"),
        ("credential.refused", None, "invalid"),
        ("refresh.reuse_detected", "alice", "reused"),
        ("credential.refused", None, "revoked"),
        ("logout", "bob", None),
    ]
    assert all(e["client"] == "127.0.0.1" and e["request_id"] for e in events)
    assert events[3]["request_id"] == denied.headers["X-Request-Id"] and events[3]["route"] == "admin"
    assert events[3]["error"] == "permission_denied" and events[0]["method"] == "password"
    assert events[0]["session"] == events[5]["session"]  # the reused token's session is the login's

    await eventually(_async(lambda: len(got.events) == len(events)), "every event delivered to the webhook")
    assert got.events == events and got.forged == 0
    secrets = [*PASSWORDS.values(), WRONG_PASSWORD, "not.a.token", WEBHOOK_SECRET]
    for pair in (alice, bob, fresh):
        secrets += [pair["access"], pair["refresh"]]
        secrets += [part for part in pair["access"].split(".") + pair["refresh"].split(".")]  # no part of one either
    written = path.read_text(encoding="utf-8") + b"".join(got.bodies).decode()
    leaked = [s[:12] for s in secrets if s in written]
    assert not leaked, leaked


def _async(check: Callable[[], bool]) -> Callable[[], Awaitable[bool]]:
    async def run() -> bool:
        return check()

    return run


async def test_decision_mode_writes_one_event_when_nginx_asks_twice(make_gateway: GatewayFactory, tmp_path: Path):
    path = tmp_path / "audit.jsonl"
    client = await make_gateway(decision={"front": "nginx"}, audit=_audit(path))
    ask = {"X-Original-Method": "GET", "X-Original-URI": "/api/x?reask", "Authorization": "Bearer not.a.token"}
    assert (await client.get("/auth/decide", headers=ask)).status == 401  # the auth_request subrequest
    assert [e["reason"] for e in file_events(path)] == ["invalid"]  # written at the first ask, not the second
    assert (await client.get("/auth/decide?reask", headers=ask)).status == 401  # @gateway_refusal
    assert [e["reason"] for e in file_events(path)] == ["invalid"]
    assert (await client.get("/auth/decide", headers=ask)).status == 401  # the next request: its own event
    assert (await client.get("/auth/decide?reask", headers=ask)).status == 401
    assert len(file_events(path)) == 2
    assert (await client.get("/auth/decide", headers={**ask, "Authorization": ""})).status == 401  # anonymous
    assert len(file_events(path)) == 2


async def test_only_nginx_second_ask_is_spared(make_gateway: GatewayFactory, tmp_path: Path):
    """Traefik asks once; a query on its decision request marks nothing."""
    path = tmp_path / "audit.jsonl"
    client = await make_gateway(decision={"front": "traefik"}, audit=_audit(path))
    ask = {"X-Forwarded-Method": "GET", "X-Forwarded-Uri": "/api/x", "X-Forwarded-Host": "localhost",
           "Authorization": "Bearer not.a.token"}
    for target in ("/auth/decide?reask", "/auth/decide?reask"):
        assert (await client.get(target, headers=ask)).status == 401
    assert len(file_events(path)) == 2


async def test_audit_disabled_writes_nothing(make_gateway: GatewayFactory, receiver: tuple[Receiver, str],
                                             tmp_path: Path):
    got, url = receiver
    path = tmp_path / "audit.jsonl"
    client = await make_gateway(audit={**_audit(path, url), "enabled": False})
    await login(client)
    assert (await client.get("/api/x", headers=bearer("not.a.token"))).status == 401
    assert not path.exists() and got.arrived == 0


@pytest.mark.serial
async def test_a_hanging_webhook_never_slows_a_request(make_gateway: GatewayFactory, receiver: tuple[Receiver, str],
                                                       tmp_path: Path):
    got, url = receiver
    got.mode = "hang"
    client = await make_gateway(audit=_audit(tmp_path / "audit.jsonl", url, timeout="3s", queue_size=2))
    await login(client)
    await eventually(_async(lambda: got.arrived >= 1), "the first delivery to reach the hanging webhook")
    for _ in range(5):
        started = time.perf_counter()
        resp = await client.get("/api/x", headers=bearer("not.a.token"))
        assert resp.status == 401
        assert time.perf_counter() - started < 1.0  # the webhook's timeout is 3 s: nothing waited for it
    assert _dropped(client, "queue_full") >= 3  # 2 wait in the queue, the rest are dropped and counted
    assert len(file_events(tmp_path / "audit.jsonl")) == 6  # the file sink has every event regardless


async def test_a_dead_webhook_is_retried_then_counted(make_gateway: GatewayFactory, tmp_path: Path):
    dead = f"http://127.0.0.1:{free_port()}/events"  # nothing listens: connection refused
    client = await make_gateway(audit=_audit(tmp_path / "audit.jsonl", dead, max_retries=1, timeout="1s"))
    await login(client)
    resp = await client.get("/api/x", headers=bearer("not.a.token"))
    assert resp.status == 401
    await eventually(_async(lambda: _dropped(client, "delivery_failed") >= 2), "the undeliverable events counted")
    assert len(file_events(tmp_path / "audit.jsonl")) == 2


async def test_a_failing_receiver_is_retried_with_the_same_signed_batch(
    make_gateway: GatewayFactory, receiver: tuple[Receiver, str], tmp_path: Path
):
    got, url = receiver
    got.mode = "fail"
    client = await make_gateway(audit=_audit(tmp_path / "audit.jsonl", url, max_retries=2, timeout="1s"))
    await login(client)
    await eventually(_async(lambda: _dropped(client, "delivery_failed") == 1), "the batch given up after 3 attempts")
    assert got.arrived == 3 and got.forged == 0


async def test_a_forged_delivery_is_refused_by_the_documented_check(
    make_gateway: GatewayFactory, receiver: tuple[Receiver, str], tmp_path: Path
):
    """The receiver holds another secret than the gateway: every delivery fails its check (and is retried)."""
    got, url = receiver
    got.secret = b"another-secret-than-the-gateways-0123456789"
    client = await make_gateway(audit=_audit(tmp_path / "audit.jsonl", url, max_retries=0, timeout="1s"))
    await login(client)
    await eventually(_async(lambda: _dropped(client, "delivery_failed") == 1), "the refused delivery counted")
    assert got.forged == 1 and got.events == []


async def test_shutdown_gives_up_on_a_hanging_webhook_within_its_timeout(
    aiohttp_client: Callable[..., Awaitable[TestClient]], make_config: Callable[..., Any],
    receiver: tuple[Receiver, str], tmp_path: Path,
):
    got, url = receiver
    got.mode = "hang"
    app = create_app(make_config(audit=_audit(tmp_path / "audit.jsonl", url, timeout="1s")))
    client = await aiohttp_client(app)
    await login(client)
    await login(client, "bob")
    await eventually(_async(lambda: got.arrived >= 1), "a delivery hanging")
    started = time.monotonic()
    await client.close()
    assert time.monotonic() - started < 10  # 1 s for the queue, then cancelled (generous for a loaded machine)
    assert app[METRICS].registry.get_sample_value("gateway_audit_events_dropped_total", {"reason": "shutdown"}) == 2


async def test_throttled_logins_and_the_session_limit_are_audited(make_gateway: GatewayFactory, tmp_path: Path):
    path = tmp_path / "audit.jsonl"
    client = await make_gateway(login_throttle={"per_user": 2, "per_ip": 100}, tokens={"max_sessions_per_user": 1},
                                audit=_audit(path))
    first = await login(client, "bob")
    second = await login(client, "bob")  # the first session goes: at most one per user
    for _ in range(3):
        await client.post("/auth/token", json={"username": "alice", "password": WRONG_PASSWORD})
    events = [(e["event"], e["subject"], e["reason"]) for e in file_events(path)]
    assert events == [
        ("login.succeeded", "bob", None),
        ("session.revoked", "bob", "session_limit"),
        ("login.succeeded", "bob", None),
        ("login.failed", "alice", "invalid_credentials"),
        ("login.failed", "alice", "invalid_credentials"),
        ("login.throttled", "alice", "per_user"),
    ]
    revoked = file_events(path)[1]
    assert revoked["session"] == file_events(path)[0]["session"] != file_events(path)[2]["session"]
    assert first["access"] != second["access"]
