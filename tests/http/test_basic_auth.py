"""auth: basic on a real socket: user sources checked once per pair and then cached, the challenge, the throttle,
malformed headers answered 4xx, no password upstream, and decision mode."""
from __future__ import annotations

import asyncio
import base64
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from gateway.app import create_app
from gateway.auth.basic import BasicAuth
from gateway.config import ConfigError, parse_config
from gateway.runtime import GATEWAY
from gateway.sources.users import hash_password
from gateway.stores.redis import RedisStore
from tests.conftest import PASSWORDS, base_config, bearer, login
from tests.support.clock import FakeClock

CHALLENGE = 'Basic realm="gateway", charset="UTF-8"'


def basic(user: str, password: str | None = None) -> dict[str, str]:
    pair = f"{user}:{PASSWORDS[user] if password is None else password}".encode()
    return {"Authorization": "Basic " + base64.b64encode(pair).decode()}


def routes(upstream: str) -> list[dict[str, Any]]:
    headers = {"X-User-Id": "sub", "X-User-Roles": "roles", "X-User-Email": "email"}
    return [
        {"name": "dav", "prefix": "/dav", "upstream": upstream, "auth": "basic", "headers": headers},
        {"name": "files", "prefix": "/files", "upstream": upstream, "auth": "basic", "basic_realm": "Admin files",
         "require": {"roles_any": ["admin"]}, "headers": headers},
        {"name": "api", "prefix": "/api", "upstream": upstream, "headers": headers},
    ]


def _basic(client) -> BasicAuth:
    found = client.server.app[GATEWAY].runtime.basic
    assert found is not None
    return found


async def test_a_right_pair_passes_with_the_users_claims_and_no_password_upstream(make_gateway, upstream):
    client = await make_gateway(routes=routes(upstream))
    resp = await client.get("/dav/notes.txt", headers={**basic("alice"), "X-User-Id": "root"})
    assert resp.status == 200, await resp.text()
    seen = (await resp.json())["headers"]
    assert (seen["X-User-Id"], seen["X-User-Roles"], seen["X-User-Email"]) == ("alice", "admin,user", "alice@example.com")
    assert "Authorization" not in seen and PASSWORDS["alice"] not in str(seen)
    assert (_basic(client).hits, _basic(client).misses) == (0, 1)
    for _ in range(3):  # the pair is remembered: no password check
        assert (await client.get("/dav/x", headers=basic("alice"))).status == 200
    assert (_basic(client).hits, _basic(client).misses, len(_basic(client))) == (3, 1, 1)


async def test_a_cold_cache_costs_one_password_check_for_concurrent_requests(make_gateway, upstream):
    """A WebDAV client opens several connections at once: one check, its answer shared, refusals included."""
    client = await make_gateway(routes=routes(upstream))
    answers = await asyncio.gather(*(client.get("/dav/x", headers=basic("alice")) for _ in range(6)))
    assert [r.status for r in answers] == [200] * 6
    assert _basic(client).misses == 1
    refused = await asyncio.gather(*(client.get("/dav/x", headers=basic("bob", "guess")) for _ in range(4)))
    assert [r.status for r in refused] == [401] * 4
    assert _basic(client).misses == 2 and len(_basic(client)) == 1


async def test_without_credentials_or_with_a_token_the_answer_is_a_basic_challenge(make_gateway, upstream):
    client = await make_gateway(routes=routes(upstream))
    resp = await client.get("/dav/x")
    assert resp.status == 401 and resp.headers["WWW-Authenticate"] == CHALLENGE
    assert (await resp.json())["code"] == "authentication_required"
    token = (await login(client, "alice"))["access"]
    resp = await client.get("/dav/x", headers=bearer(token))
    assert resp.status == 401 and resp.headers["WWW-Authenticate"] == CHALLENGE
    resp = await client.get("/files/x")
    assert resp.headers["WWW-Authenticate"] == 'Basic realm="Admin files", charset="UTF-8"'
    assert (await client.get("/api/x", headers=basic("alice"))).status == 401  # a token route takes no Basic


async def test_a_wrong_password_after_a_cached_success_is_refused(make_gateway, upstream):
    client = await make_gateway(routes=routes(upstream))
    assert (await client.get("/dav/x", headers=basic("alice"))).status == 200
    for wrong in ("wrong", PASSWORDS["alice"] + "x", PASSWORDS["alice"][:-1], PASSWORDS["bob"], ""):
        resp = await client.get("/dav/x", headers=basic("alice", wrong))
        assert resp.status == 401, wrong
        assert resp.headers["WWW-Authenticate"] == CHALLENGE and (await resp.json())["code"] == "invalid_credentials"
    resp = await client.get("/dav/x", headers=basic("bob", PASSWORDS["alice"]))  # another user, alice's password
    assert resp.status == 401
    assert _basic(client).hits == 0 and len(_basic(client)) == 1
    assert (await client.get("/dav/x", headers=basic("alice"))).status == 200


def raw(value: bytes) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(value).decode()}


@pytest.mark.parametrize(("headers", "status"), [
    ({"Authorization": "Basic !!!not-base64!!!"}, 400),
    ({"Authorization": "Basic YWxpY2U"}, 400),  # unpadded
    ({"Authorization": "Basic"}, 400),
    ({"Authorization": "Basic "}, 400),
    (raw(b"alice"), 400),  # no colon
    (raw(b"\xff\xfe:\xff"), 400),  # not UTF-8
    (raw(b"al\x00ice:pw"), 400),
    (raw(b"alice:pw\r\nX-Injected: 1"), 400),
    (raw(b"a" * 300 + b":pw"), 400),
    ({"Authorization": "Basic " + "A" * 7_000}, 400),
    (raw(b":alice-password"), 401),  # no user
    (raw(b"alice:"), 401),  # no password
    (raw("ａlice:alice-password".encode()), 401),  # fullwidth: another login
    ({"Authorization": "Digest username=alice"}, 401),
])
async def test_malformed_basic_credentials_are_4xx_never_500(make_gateway, upstream, headers, status):
    client = await make_gateway(routes=routes(upstream))
    resp = await client.get("/dav/x", headers=headers)
    assert resp.status == status, await resp.text()
    body = await resp.json()
    assert set(body) == {"detail", "code"} and "Traceback" not in body["detail"]
    if status == 401:
        assert resp.headers["WWW-Authenticate"] == CHALLENGE


async def test_two_authorization_headers_are_400(make_gateway, upstream):
    client = await make_gateway(routes=routes(upstream))
    resp = await client.get("/dav/x", headers=[("Authorization", basic("alice")["Authorization"])] * 2)
    assert resp.status == 400


async def test_requirements_apply_to_the_basic_user(make_gateway, upstream):
    client = await make_gateway(routes=routes(upstream))
    assert (await client.get("/files/x", headers=basic("alice"))).status == 200
    resp = await client.get("/files/x", headers=basic("bob"))
    assert resp.status == 403 and (await resp.json())["code"] == "permission_denied"
    assert resp.headers["WWW-Authenticate"] == 'Basic realm="Admin files", charset="UTF-8"'  # never a Bearer one


async def test_wrong_pairs_are_throttled_like_logins(make_gateway, upstream):
    client = await make_gateway(routes=routes(upstream), login_throttle={"per_user": 3})
    for _ in range(3):
        assert (await client.get("/dav/x", headers=basic("bob", "guess"))).status == 401
    resp = await client.get("/dav/x", headers=basic("bob", "guess"))
    assert resp.status == 429 and int(resp.headers["Retry-After"]) > 0
    assert (await resp.json())["code"] == "rate_limited"
    assert (await client.get("/dav/x", headers=basic("bob"))).status == 429  # even the right one: the lock holds
    refused = await client.post("/auth/token", json={"username": "bob", "password": PASSWORDS["bob"]})
    assert refused.status == 429  # one counter with the login endpoint
    assert (await client.get("/dav/x", headers=basic("alice"))).status == 200  # another user is not locked


async def test_a_cached_pair_ends_with_the_cache_lifetime(make_gateway, upstream):
    client = await make_gateway(routes=routes(upstream), basic_auth={"cache_lifetime": "30s"})
    clock = _basic(client).clock = FakeClock()
    assert (await client.get("/dav/x", headers=basic("alice"))).status == 200
    clock.advance(29)
    assert (await client.get("/dav/x", headers=basic("alice"))).status == 200
    assert _basic(client).misses == 1
    clock.advance(2)
    assert (await client.get("/dav/x", headers=basic("alice"))).status == 200
    assert _basic(client).misses == 2  # checked against the source again


async def test_lifetime_zero_checks_every_request(make_gateway, upstream):
    client = await make_gateway(routes=routes(upstream), basic_auth={"cache_lifetime": 0})
    for _ in range(2):
        assert (await client.get("/dav/x", headers=basic("bob"))).status == 200
    assert (_basic(client).hits, _basic(client).misses, len(_basic(client))) == (0, 2, 0)


async def test_a_password_changed_in_an_sql_source_counts_once_the_entry_ends(aiohttp_client, upstream, tmp_path: Path):
    db = tmp_path / "users.sqlite3"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE users (login TEXT PRIMARY KEY, password_hash TEXT, email TEXT)")
        conn.execute("INSERT INTO users VALUES ('carol', ?, 'carol@example.com')", (hash_password("old-password"),))
    sql = {"url": f"sqlite:///{db}", "query": "SELECT login, password_hash, email FROM users WHERE login = :login",
           "claims": {"email": "email"}}
    raw = base_config(upstream, tmp_path / "unused.yaml", routes=routes(upstream), basic_auth={"cache_lifetime": "1m"})
    raw["users_file"], raw["users"] = None, [{"sql": sql}]
    client = await aiohttp_client(create_app(parse_config(raw, tmp_path)))
    clock = _basic(client).clock = FakeClock()
    resp = await client.get("/dav/x", headers=basic_pair("carol", "old-password"))
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["headers"]["X-User-Email"] == "carol@example.com"
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE users SET password_hash = ? WHERE login = 'carol'", (hash_password("new-password"),))
    assert (await client.get("/dav/x", headers=basic_pair("carol", "old-password"))).status == 200  # cached
    assert (await client.get("/dav/x", headers=basic_pair("carol", "new-password"))).status == 200
    clock.advance(61)
    assert (await client.get("/dav/x", headers=basic_pair("carol", "old-password"))).status == 401
    assert (await client.get("/dav/x", headers=basic_pair("carol", "new-password"))).status == 200


def basic_pair(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


async def test_decision_mode_answers_basic_routes(make_gateway, upstream):
    client = await make_gateway(routes=routes(upstream), decision={"front": "nginx"})
    asked = {"X-Original-Method": "PROPFIND", "X-Original-URI": "/dav/notes/", "Host": "app.example"}
    allowed = await client.get("/auth/decide", headers={**asked, **basic("alice")})
    assert allowed.status == 200, await allowed.text()
    assert allowed.headers["X-User-Id"] == "alice" and allowed.headers["X-User-Roles"] == "admin,user"
    assert allowed.headers["Cache-Control"] == "no-store"  # never a password in the front's cache key
    for headers in (asked, {**asked, **basic("alice", "wrong")}):
        refused = await client.get("/auth/decide", headers=headers)
        assert refused.status == 401 and refused.headers["WWW-Authenticate"] == CHALLENGE
        assert refused.headers["Cache-Control"] == "no-store"
    malformed = await client.get("/auth/decide", headers={**asked, "Authorization": "Basic %%%"})
    assert malformed.status == 400


@pytest.mark.parametrize(("route", "message"), [
    ({"forward_authorization": True}, "would send the password upstream"),
    ({"websocket": True}, "carries no websocket upgrades"),
    ({"login": "signin"}, "asks the client for a password itself"),
    ({"basic_realm": 'a"b'}, "without quotes or backslashes"),
    ({"auth": "required", "basic_realm": "x"}, "basic_realm: needs auth: basic"),
])
def test_config_errors(make_config, upstream, route, message):
    with pytest.raises(ConfigError) as info:
        make_config(routes=[{"prefix": "/dav", "upstream": upstream, "auth": "basic", **route}])
    assert message in str(info.value)


def test_cache_lifetime_is_bounded(make_config):
    with pytest.raises(ConfigError, match="at most 10m"):
        make_config(basic_auth={"cache_lifetime": "1h"})


async def test_the_throttle_holds_across_instances_sharing_redis(make_gateway, upstream, redis_url):
    settings = {"per_user": 2}
    first = await make_gateway(RedisStore(redis_url), routes=routes(upstream), login_throttle=settings)
    second = await make_gateway(RedisStore(redis_url), routes=routes(upstream), login_throttle=settings)
    assert (await first.get("/dav/x", headers=basic("bob", "guess"))).status == 401
    assert (await second.get("/dav/x", headers=basic("bob", "guess"))).status == 401
    for instance in (first, second):
        resp = await instance.get("/dav/x", headers=basic("bob", "guess"))
        assert resp.status == 429 and "Retry-After" in resp.headers
    assert (await second.get("/dav/x", headers=basic("alice"))).status == 200


async def test_a_rate_limit_by_sub_counts_the_basic_user(make_gateway, upstream):
    dav = {**routes(upstream)[0], "rate_limit": {"requests": 2, "per": "1m", "key": "sub"}}
    client = await make_gateway(routes=[dav])
    for _ in range(2):
        assert (await client.get("/dav/x", headers=basic("alice"))).status == 200
    assert (await client.get("/dav/x", headers=basic("alice"))).status == 429
    assert (await client.get("/dav/x", headers=basic("bob"))).status == 200  # another user, another count


async def test_another_sites_page_cannot_write_with_the_browsers_pair(make_gateway, upstream):
    """A browser sends a pair it was given on its own, like a cookie: writes from foreign origins are refused."""
    client = await make_gateway(routes=routes(upstream))
    own = f"http://127.0.0.1:{client.port}"
    for method in ("POST", "PUT", "DELETE", "PROPPATCH"):
        resp = await client.request(method, "/dav/x", headers={**basic("alice"), "Origin": "https://evil.example"})
        assert resp.status == 403 and (await resp.json())["code"] == "origin_not_allowed", method
        resp = await client.request(method, "/dav/x", headers={**basic("alice"), "Origin": "null"})
        assert resp.status == 403, method
        assert (await client.request(method, "/dav/x", headers={**basic("alice"), "Origin": own})).status == 200
        assert (await client.request(method, "/dav/x", headers=basic("alice"))).status == 200  # scripts send none
    assert (await client.get("/dav/x", headers={**basic("alice"), "Origin": "https://evil.example"})).status == 200
    assert _basic(client).misses == 1  # refused before any password check


async def test_origins_cors_allows_may_write(make_gateway, upstream):
    client = await make_gateway(routes=routes(upstream), cors={"allow_origins": ["https://app.example"]})
    resp = await client.post("/dav/x", headers={**basic("alice"), "Origin": "https://app.example"})
    assert resp.status == 200
    resp = await client.post("/dav/x", headers={**basic("alice"), "Origin": "https://evil.example"})
    assert resp.status == 403 and (await resp.json())["code"] == "origin_not_allowed"
