"""The admin API on the admin listener: named keys (none, wrong, on the main listener), listing a user's sessions with
how and from where they started, and revoking one, all of a user's, never another user's; on memory and Redis."""
from __future__ import annotations

import asyncio
import logging
from typing import Any, Awaitable, Callable

import pytest
from aiohttp.test_utils import TestClient

from gateway.app import create_app
from gateway.auth.admin_keys import generate_admin_key
from gateway.auth.jose import peek_claims
from gateway.runtime import GATEWAY
from gateway.server.admin import create_admin_app
from gateway.stores.redis import RedisStore
from tests.conftest import PASSWORDS, bearer

KEY, DIGEST = generate_admin_key()
OTHER_KEY, OTHER_DIGEST = generate_admin_key()
ADMIN = {"host": "127.0.0.1", "port": 0, "keys": [{"name": "ops-alice", "sha256": DIGEST},
                                                 {"name": "ops-bob", "sha256": OTHER_DIGEST}]}
ROUTES = [{"name": "api", "prefix": "/api", "upstream": "UPSTREAM"}]  # no /admin route: /admin/... is unrouted there


class Pair:
    def __init__(self, main: TestClient, admin: TestClient) -> None:
        self.main, self.admin = main, admin


@pytest.fixture(params=["memory", "redis"])
async def gateways(request: pytest.FixtureRequest, aiohttp_client: Callable[..., Awaitable[TestClient]],
                   make_config: Callable[..., Any], upstream: str) -> Callable[..., Awaitable[Pair]]:
    """The main and the admin listener of one gateway, on the memory store or on a real Redis."""
    async def make(**admin: Any) -> Pair:
        store = RedisStore(request.getfixturevalue("redis_url")) if request.param == "redis" else None
        routes = [{**r, "upstream": upstream} for r in ROUTES]
        app = create_app(make_config(admin={**ADMIN, **admin}, routes=routes), store=store)
        main = await aiohttp_client(app)
        return Pair(main, await aiohttp_client(create_admin_app(app[GATEWAY])))

    return make


async def login(client: TestClient, user: str = "alice", agent: str = "test-browser/1.0") -> dict[str, Any]:
    resp = await client.post("/auth/token", json={"username": user, "password": PASSWORDS[user]},
                             headers={"User-Agent": agent})
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    return {**body, "fid": peek_claims(body["access"])["fid"]}


async def test_without_keys_the_api_is_off_and_health_stays(aiohttp_client, make_config):
    app = create_app(make_config(admin={"host": "127.0.0.1", "port": 0}))
    admin = await aiohttp_client(create_admin_app(app[GATEWAY]))
    resp = await admin.get("/admin/api/sessions?user=alice", headers=bearer(KEY))
    assert resp.status == 404 and (await resp.json())["code"] == "not_found"
    assert (await admin.get("/healthz")).status == 200
    assert (await admin.get("/metrics")).status == 200


async def test_keys_are_required_and_checked(gateways):
    pair = await gateways()
    url = "/admin/api/sessions?user=alice"
    resp = await pair.admin.get(url)
    assert resp.status == 401 and (await resp.json())["code"] == "admin_key_required"
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    for wrong in (KEY[:-1], KEY + "x", DIGEST, "", "x" * 5000, f"Basic {KEY}"):
        resp = await pair.admin.get(url, headers={"Authorization": f"Bearer {wrong}" if "Basic" not in wrong else wrong})
        assert resp.status == 401, wrong
        assert (await resp.json())["code"] in {"admin_key_invalid", "admin_key_required"}
    resp = await pair.admin.get(url, headers=[("Authorization", f"Bearer {KEY}"), ("Authorization", f"Bearer {KEY}")])
    assert resp.status == 401
    unknown = await pair.admin.get("/admin/api/nothing", headers=bearer("wrong"))
    assert unknown.status == 401  # the key first: a caller without one learns no path
    assert (await pair.admin.get("/admin/api/nothing", headers=bearer(KEY))).status == 404
    wrong_method = await pair.admin.delete("/admin/api/sessions", headers=bearer(KEY))
    assert wrong_method.status == 405 and wrong_method.headers["Allow"] == "GET"
    assert (await pair.admin.get(url, headers=bearer(KEY))).status == 200
    assert (await pair.admin.get(url, headers=bearer(OTHER_KEY))).status == 200


async def test_the_main_listener_has_no_admin_api(gateways):
    pair = await gateways()
    for path in ("/admin/api/sessions?user=alice", "/admin/api/sessions/revoke"):
        resp = await pair.main.get(path, headers=bearer(KEY))
        assert resp.status == 404 and (await resp.json())["code"] == "not_found"
    resp = await pair.main.post("/admin/api/sessions/revoke", json={"user": "alice"}, headers=bearer(KEY))
    assert resp.status == 404


async def test_sessions_are_listed_with_their_origin_and_refresh(gateways):
    pair = await gateways()
    first = await login(pair.main, agent="Firefox/120")
    await login(pair.main, agent="curl/8.5\tx")
    await login(pair.main, "bob")
    resp = await pair.admin.get("/admin/api/sessions?user=alice", headers=bearer(KEY))
    assert resp.status == 200 and resp.headers["Cache-Control"] == "no-store"
    body = await resp.json()
    assert body["user"] == "alice" and len(body["sessions"]) == 2
    by_agent = {s["user_agent"]: s for s in body["sessions"]}
    assert set(by_agent) == {"Firefox/120", "curl/8.5x"}  # control characters dropped
    one = by_agent["Firefox/120"]
    assert one["session"] == first["fid"] and one["method"] == "password" and one["provider"] is None
    assert one["client_ip"] == "127.0.0.1" and one["factors"] == [] and one["last_refresh"] is None
    assert one["created"] <= one["access_expires"]
    await asyncio.sleep(1.1)  # whole seconds: a new access token's exp must move
    refreshed = await pair.main.post("/auth/token/refresh", json={"refresh": first["refresh"]})
    assert refreshed.status == 200
    again = {s["session"]: s for s in (await (await pair.admin.get(
        "/admin/api/sessions?user=alice", headers=bearer(KEY))).json())["sessions"]}
    assert again[first["fid"]]["last_refresh"] >= one["created"]
    assert again[first["fid"]]["access_expires"] > one["access_expires"]
    assert (await (await pair.admin.get("/admin/api/sessions?user=nobody", headers=bearer(KEY))).json())["sessions"] == []
    assert (await pair.admin.get("/admin/api/sessions", headers=bearer(KEY))).status == 400


async def test_revoking_one_session_ends_it_and_only_it(gateways):
    pair = await gateways()
    doomed, kept = await login(pair.main), await login(pair.main)
    assert (await pair.main.get("/api/x", headers=bearer(doomed["access"]))).status == 200
    resp = await pair.admin.post("/admin/api/sessions/revoke", json={"user": "alice", "session": doomed["fid"]},
                                 headers=bearer(KEY))
    assert resp.status == 200 and (await resp.json())["revoked"] == [doomed["fid"]]
    refused = await pair.main.get("/api/x", headers=bearer(doomed["access"]))
    assert refused.status == 401 and (await refused.json())["code"] == "token_revoked"
    refresh = await pair.main.post("/auth/token/refresh", json={"refresh": doomed["refresh"]})
    assert refresh.status == 401
    assert (await pair.main.get("/api/x", headers=bearer(kept["access"]))).status == 200
    listed = await (await pair.admin.get("/admin/api/sessions?user=alice", headers=bearer(KEY))).json()
    assert [s["session"] for s in listed["sessions"]] == [kept["fid"]]
    again = await pair.admin.post("/admin/api/sessions/revoke", json={"user": "alice", "session": doomed["fid"]},
                                  headers=bearer(KEY))
    assert again.status == 404 and (await again.json())["code"] == "session_not_found"


async def test_revoking_all_of_a_users_sessions(gateways):
    pair = await gateways()
    tokens = [await login(pair.main) for _ in range(3)]
    bobs = await login(pair.main, "bob")
    resp = await pair.admin.post("/admin/api/sessions/revoke", json={"user": "alice"}, headers=bearer(KEY))
    assert sorted((await resp.json())["revoked"]) == sorted(t["fid"] for t in tokens)
    for t in tokens:
        assert (await pair.main.get("/api/x", headers=bearer(t["access"]))).status == 401
    assert (await pair.main.get("/api/x", headers=bearer(bobs["access"]))).status == 200


async def test_another_users_session_under_a_user_is_refused(gateways):
    pair = await gateways()
    await login(pair.main)
    bobs = await login(pair.main, "bob")
    resp = await pair.admin.post("/admin/api/sessions/revoke", json={"user": "alice", "session": bobs["fid"]},
                                 headers=bearer(KEY))
    assert resp.status == 404 and (await resp.json())["code"] == "session_not_found"
    assert (await pair.main.get("/api/x", headers=bearer(bobs["access"]))).status == 200


@pytest.mark.parametrize("body", [
    b"{not json", b"[1, 2]", b'"alice"', b"", b'{"user": 5}', b'{"user": ""}', b'{"user": "alice", "session": ["x"]}',
    b'{"user": "alice", "extra": 1}', b'{"session": "x"}', b'{"user": "alice", "provider": "nowhere"}',
    b'{"user": "' + b"a" * 300 + b'"}', b'{"user": "\\ud800"}', b"{" + b" " * 20000 + b"}",
])
async def test_malformed_bodies_are_400(gateways, body):
    pair = await gateways()
    resp = await pair.admin.post("/admin/api/sessions/revoke", data=body, headers=bearer(KEY))
    assert resp.status == 400, await resp.text()
    assert (await resp.json())["code"] == "bad_request"


async def test_every_action_is_an_audit_event_naming_the_key(gateways, caplog):
    caplog.set_level(logging.INFO, "gateway.audit")
    pair = await gateways()
    session = await login(pair.main)
    listed = await pair.admin.get("/admin/api/sessions?user=alice", headers=bearer(KEY))
    await pair.admin.post("/admin/api/sessions/revoke", json={"user": "alice"},
                          headers={**bearer(OTHER_KEY), "X-Request-Id": "ops-ticket-42"})
    refused = await pair.admin.get("/admin/api/sessions?user=alice", headers=bearer("not-a-key"))
    events = [(r.getMessage(), r.audit) for r in caplog.records if r.name == "gateway.audit"]
    events = [(name, fields) for name, fields in events if name != "login.succeeded"]  # the login's own event
    names = [name for name, _ in events]
    assert names == ["admin.sessions.listed", "session.revoked", "admin.sessions.revoked", "admin.refused"]
    fields = dict(events)
    assert fields["admin.sessions.listed"]["admin_key"] == "ops-alice" and fields["admin.sessions.listed"]["count"] == 1
    assert fields["admin.sessions.revoked"]["admin_key"] == "ops-bob"
    revoked = fields["session.revoked"]
    assert (revoked["session"], revoked["subject"], revoked["provider"], revoked["reason"], revoked["admin_key"]) == (
        session["fid"], "alice", None, "admin", "ops-bob")
    assert revoked["client"] == "127.0.0.1"  # the admin call's peer
    # each event names its call's request id: the caller's, or the one the answer carries
    assert revoked["request_id"] == fields["admin.sessions.revoked"]["request_id"] == "ops-ticket-42"
    assert fields["admin.sessions.listed"]["request_id"] == listed.headers["X-Request-Id"]
    assert fields["admin.refused"]["request_id"] == refused.headers["X-Request-Id"]
    assert len({listed.headers["X-Request-Id"], refused.headers["X-Request-Id"], "ops-ticket-42"}) == 3
    text = repr(events)
    for secret in (KEY, OTHER_KEY, "not-a-key", session["access"], session["refresh"], PASSWORDS["alice"]):
        assert secret not in text


async def test_a_revocation_reaches_another_instance_within_the_revocation_cache_bound(
        aiohttp_client, make_config, upstream, redis_url):
    """Two instances on one Redis, each trusting "not revoked" for up to 2 s: revoked through B's admin API, the session's
    access token is refused by A within that bound (the revocation is published like a logout's)."""
    bound = 2.0
    routes = [{**r, "upstream": upstream} for r in ROUTES]
    config = make_config(admin=ADMIN, routes=routes,
                         store={"backend": "redis", "url": redis_url, "revocation_cache": f"{bound}s"})
    a = await aiohttp_client(create_app(config))
    b_app = create_app(config)
    await aiohttp_client(b_app)
    b_admin = await aiohttp_client(create_admin_app(b_app[GATEWAY]))
    session = await login(a)
    assert (await a.get("/api/x", headers=bearer(session["access"]))).status == 200  # cached as not revoked on A
    resp = await b_admin.post("/admin/api/sessions/revoke", json={"user": "alice"}, headers=bearer(KEY))
    assert (await resp.json())["revoked"] == [session["fid"]]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + bound + 1.0  # the bound, and a margin for a loaded machine
    while (status := (await a.get("/api/x", headers=bearer(session["access"]))).status) == 200:
        assert loop.time() < deadline, "A still serves the revoked session past the revocation cache's bound"
        await asyncio.sleep(0.05)
    assert status == 401
