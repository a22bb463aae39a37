"""Decision mode on a real socket: the same admission as proxy mode, for the original request a front proxy describes.

Proxy mode is the reference: each refusal is compared with what the same
request gets when the gateway proxies it. The front proxies themselves run in
tests/ops/test_decision_fronts.py.
"""
from __future__ import annotations

import asyncio
import time

import jwt
import pytest
from multidict import CIMultiDict

from gateway.app import create_app
from gateway.auth.admission_cache import AdmissionCache
from gateway.config import ConfigError
from gateway.runtime import GATEWAY
from tests.conftest import bearer, login
from tests.support.jwt_tools import make_key

NGINX = {"front": "nginx"}
SPOOFS = {"X-User-Id": "root", "X_User_Roles": "admin", "X-Auth-Tenant": "evil", "X-Gateway-Identity": "forged"}


def asked(method: str, uri: str, host: str = "app.example", **headers: str) -> dict[str, str]:
    """The headers nginx's auth_request location sends (deploy/nginx/gateway-decision.conf)."""
    return {"X-Original-Method": method, "X-Original-URI": uri, "Host": host, **headers}


async def decide(client, headers: dict[str, str], path: str = "/auth/decide", method: str = "GET"):
    return await client.request(method, path, headers=headers)


async def same_refusal(client, method: str, uri: str, **headers: str) -> tuple[int, dict]:
    """The decision's refusal equals proxy mode's: status, JSON body and WWW-Authenticate."""
    proxied = await client.request(method, uri, headers=headers)
    decided = await decide(client, asked(method, uri, **headers))
    assert decided.status == proxied.status, await decided.text()
    assert await decided.json() == await proxied.json()
    assert decided.headers.get("WWW-Authenticate") == proxied.headers.get("WWW-Authenticate")
    assert decided.headers["Cache-Control"] == "no-store" and decided.headers["X-Accel-Expires"] == "0"
    return decided.status, await decided.json()


async def test_an_allowed_decision_carries_only_the_gateways_identity_headers(make_gateway):
    client = await make_gateway(decision=NGINX)
    token = (await login(client, "bob"))["access"]
    resp = await decide(client, asked("GET", "/api/things?x=1", **bearer(token), **SPOOFS, **{"X-Custom": "c"}))
    assert resp.status == 200, await resp.text()
    assert resp.headers["X-User-Id"] == "bob" and resp.headers["X-User-Roles"] == "user"
    assert resp.headers["X-Auth-Tenant"] == "acme" and "X-Gateway-Identity" not in resp.headers  # no identity_jwt here
    assert "X-Custom" not in resp.headers and "X-Forwarded-For" not in resp.headers and "Forwarded" not in resp.headers
    assert resp.headers["Cache-Control"] == "no-store"  # memory store: no revocation cache, so nothing is cached
    assert await resp.read() == b""
    anonymous = await decide(client, asked("GET", "/maybe/x", **SPOOFS))
    assert anonymous.status == 200 and "X-User-Id" not in anonymous.headers
    public = await decide(client, asked("POST", "/public/x"))
    assert public.status == 200


async def test_refusals_are_proxy_modes_own(make_gateway):
    client = await make_gateway(decision=NGINX)
    bob = (await login(client, "bob"))["access"]
    assert (await same_refusal(client, "GET", "/api/x"))[0] == 401
    assert (await same_refusal(client, "GET", "/api/x", **bearer("not-a-token")))[0] == 401
    assert (await same_refusal(client, "GET", "/admin/x", **bearer(bob)))[0] == 403
    assert (await same_refusal(client, "GET", "/nowhere"))[0] == 404
    assert (await same_refusal(client, "DELETE", "/api/x?_method=GET", **bearer(bob)))[0] == 400


async def test_a_routes_error_style_applies(make_gateway, upstream):
    routes = [{"name": "drf", "prefix": "/drf", "upstream": upstream, "errors": "simplejwt"}]
    client = await make_gateway(decision=NGINX, routes=routes)
    status, body = await same_refusal(client, "GET", "/drf/x", **bearer("x.y.z"))
    assert status == 401 and body.get("code") == "token_not_valid" and "detail" in body


@pytest.mark.parametrize("uri", [
    "/api/..%2fadmin", "/api/x;jsessionid=1", "/api/%252e%252e/admin", "/api/./x", "/api/../admin/x", "/api//x",
    "/api/x%00", "/api\\x", "/api/x?_method=DELETE", "/api/%EF%BC%8F", "http://app.example/api/x", "api/x", "*",
    "/api/x y", "/api/admin%3F/users", "/api/admin%3f/users", "/api/admin%23/users", "/api/x%23",
])
async def test_path_tricks_are_400_as_in_proxy_mode(make_gateway, uri):
    client = await make_gateway(decision=NGINX)
    token = (await login(client))["access"]
    resp = await decide(client, asked("GET", uri, **bearer(token)))
    assert resp.status == 400, (uri, await resp.text())
    assert "X-User-Id" not in resp.headers


async def test_case_folded_paths_match_like_proxy_mode(make_gateway):
    client = await make_gateway(decision=NGINX)
    token = (await login(client, "bob"))["access"]
    assert (await decide(client, asked("GET", "/ADMIN/x", **bearer(token)))).status == 403  # the admin route, not "no route"
    assert (await decide(client, asked("GET", "/Api/x", **bearer(token)))).status == 200


async def test_hosts_are_validated_and_route_hosts_match(make_gateway, upstream):
    routes = [{"name": "shop", "prefix": "/", "host": "shop.example", "upstream": upstream, "headers": {"X-User-Id": "sub"}}]
    client = await make_gateway(decision=NGINX, routes=routes)
    token = (await login(client))["access"]
    assert (await decide(client, asked("GET", "/x", "Shop.Example.:80", **bearer(token)))).status == 200
    assert (await decide(client, asked("GET", "/x", "other.example", **bearer(token)))).status == 404
    for bad in ("a b", "shop.example/x", "shop.example:99999", "[::1"):
        assert (await decide(client, asked("GET", "/x", bad, **bearer(token)))).status == 400, bad


async def test_the_original_request_must_be_described_exactly_once(make_gateway):
    client = await make_gateway(decision=NGINX)
    token = (await login(client))["access"]
    whole = asked("GET", "/api/x", **bearer(token))
    for missing in ("X-Original-Method", "X-Original-URI"):
        resp = await decide(client, {k: v for k, v in whole.items() if k != missing})
        assert resp.status == 400 and missing in (await resp.json())["detail"]
    doubled = await client.get("/auth/decide", headers=[*whole.items(), ("X-Original-URI", "/public/x")])
    assert doubled.status == 400
    assert (await decide(client, {**whole, "X-Original-Method": "get"})).status == 400
    # traefik's headers mean nothing to a gateway told its front is nginx
    traefik_style = {"X-Forwarded-Method": "GET", "X-Forwarded-Uri": "/api/x", **bearer(token)}
    assert (await decide(client, traefik_style)).status == 400


async def test_only_allowed_peers_are_answered(make_gateway):
    client = await make_gateway(decision={"front": "nginx", "allow_from": ["10.0.0.0/8"]})
    token = (await login(client))["access"]
    resp = await decide(client, asked("GET", "/api/x", **bearer(token), **{"X-Forwarded-For": "10.1.2.3"}))
    assert resp.status == 404 and "X-User-Id" not in resp.headers  # the connection's peer is loopback
    off = await make_gateway()
    assert (await decide(off, asked("GET", "/api/x", **bearer(token)))).status == 404  # off unless configured


@pytest.mark.parametrize("front", ["traefik", "caddy", "haproxy"])
async def test_traefik_caddy_and_haproxy_describe_by_x_forwarded(make_gateway, front):
    client = await make_gateway(decision={"front": front})
    token = (await login(client, "bob"))["access"]
    headers = {"X-Forwarded-Method": "PATCH", "X-Forwarded-Uri": "/api/x?y=1", "X-Forwarded-Host": "app.example",
               "X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.9", **bearer(token)}
    resp = await decide(client, headers)
    assert resp.status == 200 and resp.headers["X-User-Id"] == "bob"
    assert (await decide(client, {**headers, "X-Forwarded-Uri": "/admin/x"})).status == 403
    assert (await decide(client, {k: v for k, v in headers.items() if k != "X-Forwarded-Host"})).status == 400


async def test_envoy_describes_by_path_prefix_and_method(make_gateway):
    client = await make_gateway(decision={"front": "envoy", "path": "/ext-authz"})
    token = (await login(client, "bob"))["access"]
    resp = await client.delete("/ext-authz/api/x?y=1", headers={"Host": "app.example", **bearer(token)})
    assert resp.status == 200 and resp.headers["X-User-Id"] == "bob"
    assert (await client.get("/ext-authz/admin/x", headers=bearer(token))).status == 403
    assert (await client.get("/ext-authz/api/..%2fadmin", headers=bearer(token))).status == 400
    assert (await client.get("/ext-authz", headers=bearer(token))).status == 400  # no original path


async def test_signed_identity_header_is_in_the_answer(make_gateway, upstream, tmp_path):
    key = make_key(tmp_path, "ES256", "gw-es")
    routes = [{"name": "signed", "prefix": "/signed", "upstream": upstream, "identity_jwt": {}, "headers": {"X-User-Id": "sub"}}]
    client = await make_gateway(decision=NGINX, tokens={"secret": None, "keys": [key.spec(active=True)]}, routes=routes)
    token = (await login(client))["access"]
    resp = await decide(client, asked("GET", "/signed/x", **bearer(token), **{"X-Gateway-Identity": "forged"}))
    assert resp.status == 200
    identity = resp.headers["X-Gateway-Identity"]
    claims = jwt.decode(identity, key.public_jwk() and jwt.PyJWK(key.public_jwk()).key, algorithms=["ES256"],
                        audience=upstream, issuer="test-gw")
    assert claims["sub"] == "alice" and claims["token_type"] == "identity"


async def test_cookie_mode_decisions_check_csrf_and_are_never_cached_on_writes(make_gateway):
    client = await make_gateway(decision=NGINX, cookies={"enabled": True, "secure": False})
    resp = await client.post("/auth/token", json={"username": "alice", "password": "alice-password"})
    assert resp.status == 200
    cookie_header = "; ".join(f"{c.key}={c.value}" for c in client.session.cookie_jar)
    client.session.cookie_jar.clear()
    read = await decide(client, asked("GET", "/api/x", Cookie=cookie_header))
    assert read.status == 200 and read.headers["X-User-Id"] == "alice"
    write = await decide(client, asked("POST", "/api/x", Cookie=cookie_header))
    assert write.status == 403 and (await write.json())["code"] == "csrf_failed"


def _cache(client) -> AdmissionCache:
    cache = client.server.app[GATEWAY].admissions
    assert cache is not None
    return cache


async def _until_subscribed(cache: AdmissionCache) -> None:
    deadline = time.monotonic() + 10
    while not cache.revocations.healthy:
        assert time.monotonic() < deadline, "revocation cache never subscribed"
        await asyncio.sleep(0.05)


async def test_with_the_revocation_cache_decisions_are_cached_and_revocation_ends_them(
    aiohttp_client, make_config, redis_url, upstream
):
    routes = [
        {"name": "api", "prefix": "/api", "upstream": upstream, "headers": {"X-User-Id": "sub"}},
        {"name": "limited", "prefix": "/limited", "upstream": upstream, "rate_limit": {"requests": 2, "per": "1m"}},
    ]
    config = make_config(decision={"front": "nginx", "max_age": "30s"}, routes=routes,
                         store={"backend": "redis", "url": redis_url, "revocation_cache": "20s"})
    client = await aiohttp_client(create_app(config))
    cache = _cache(client)
    await _until_subscribed(cache)
    pair = await login(client)
    headers = asked("GET", "/api/x", **bearer(pair["access"]))
    first = await decide(client, headers)
    assert first.status == 200 and first.headers["Cache-Control"] == "private, max-age=20"
    assert first.headers["X-Accel-Expires"] == "20"
    second = await decide(client, headers)
    assert second.status == 200 and second.headers["X-User-Id"] == "alice" and cache.hits == 1
    assert first.headers["X-Request-Id"] != second.headers["X-Request-Id"]  # per request, never cached
    assert (await decide(client, asked("POST", "/api/x", **bearer(pair["access"])))).status == 200
    assert len(cache) == 1 and cache.hits == 2  # per (credential, route): the method is checked per request
    resp = await client.post("/auth/logout", json={"refresh": pair["refresh"]}, headers=bearer(pair["access"]))
    assert resp.status in (200, 204), await resp.text()
    revoked = await decide(client, headers)
    assert revoked.status == 401 and (await revoked.json())["code"] == "token_revoked"
    other = (await login(client, "bob"))["access"]
    limited = [await decide(client, asked("GET", "/limited/x", **bearer(other))) for _ in range(3)]
    assert [r.status for r in limited] == [200, 200, 429]  # a rate-limited route: every decision counts
    assert all(r.headers["Cache-Control"] == "no-store" for r in limited)
    assert "RateLimit" in limited[0].headers


def test_config_errors(make_config):
    with pytest.raises(ConfigError, match="allow_from"):
        make_config(decision={"front": "nginx", "allow_from": ["10.0.0.1/8"]})
    with pytest.raises(ConfigError, match="decision.path"):
        make_config(decision={"front": "nginx", "path": "/auth/token"})
    with pytest.raises(ConfigError, match="front"):
        make_config(decision={"front": "apache"})
    assert make_config(decision=NGINX).decision.allow_from == ("127.0.0.0/8", "::1/128")


async def test_a_revocation_at_another_instance_ends_cached_decisions(aiohttp_client, make_config, redis_url, upstream):
    """Instance B logs the caller out; A's decision cache hears it through the revocation cache's pub/sub."""
    routes = [{"name": "api", "prefix": "/api", "upstream": upstream, "headers": {"X-User-Id": "sub"}}]
    config = make_config(decision={"front": "nginx", "max_age": "60s"}, routes=routes,
                         store={"backend": "redis", "url": redis_url, "prefix": "decide-two:", "revocation_cache": "60s"})
    a, b = await aiohttp_client(create_app(config)), await aiohttp_client(create_app(config))
    cache = _cache(a)
    await _until_subscribed(cache)
    pair = await login(b)
    headers = asked("GET", "/api/x", **bearer(pair["access"]))
    assert (await decide(a, headers)).status == 200
    assert (await decide(a, headers)).status == 200 and cache.hits == 1  # cached, for up to 60 s
    resp = await b.post("/auth/logout", json={"refresh": pair["refresh"]}, headers=bearer(pair["access"]))
    assert resp.status == 200
    deadline = time.monotonic() + 10  # pub/sub delivery: milliseconds; the bound only keeps the test finite
    while (status := (await decide(a, headers)).status) == 200:
        assert time.monotonic() < deadline, "the other instance's revocation never ended the cached decision"
        await asyncio.sleep(0.05)
    assert status == 401


async def test_the_cache_key_is_what_authenticates(aiohttp_client, make_config, redis_url):
    """Two callers sharing an Authorization header of another scheme are told apart by their access cookies."""
    config = make_config(decision=NGINX, cookies={"enabled": True, "secure": False},
                         store={"backend": "redis", "url": redis_url, "prefix": "decide-key:", "revocation_cache": "30s"})
    client = await aiohttp_client(create_app(config))
    await _until_subscribed(_cache(client))
    cookies = {}
    for user in ("alice", "bob"):
        assert (await client.post("/auth/token", json={"username": user, "password": f"{user}-password"})).status == 200
        cookies[user] = "; ".join(f"{c.key}={c.value}" for c in client.session.cookie_jar)
        client.session.cookie_jar.clear()
    for user in ("alice", "bob", "alice"):
        resp = await decide(client, asked("GET", "/api/x", Authorization="Basic c2hhcmVkOnNoYXJlZA==", Cookie=cookies[user]))
        assert resp.status == 200 and resp.headers["X-User-Id"] == user
    assert _cache(client).hits == 1


async def test_caddy_answers_name_every_identity_header(make_gateway):
    """Caddy 2.6 would set a copied header the answer lacks to its placeholder's text: for caddy, empty instead."""
    caddy = await make_gateway(decision={"front": "caddy"})
    described = {"X-Forwarded-Method": "GET", "X-Forwarded-Uri": "/public/x", "X-Forwarded-Host": "app.example"}
    resp = await decide(caddy, described)
    assert resp.status == 200
    assert {h: resp.headers.get(h) for h in ("X-User-Id", "X-Auth-Tenant", "X-Gateway-Identity")} == \
        {"X-User-Id": "", "X-Auth-Tenant": "", "X-Gateway-Identity": ""}
    bob = (await login(caddy, "bob"))["access"]
    resp = await decide(caddy, {**described, "X-Forwarded-Uri": "/admin/x", **bearer((await login(caddy))["access"])})
    assert resp.headers["X-User-Id"] == "alice" and resp.headers["X-User-Email"] == ""  # admin injects no email
    nginx = await make_gateway(decision=NGINX)
    assert "X-User-Id" not in (await decide(nginx, asked("GET", "/public/x", **bearer(bob)))).headers


async def test_headers_a_front_cannot_remove_are_refused_and_counted(make_gateway):
    """The gateway as backstop: nginx can only clear headers by exact name, so a family member or an unknown
    X-Forwarded-* in the original request is refused (the app would get it); Caddy's config removes both itself."""
    nginx = await make_gateway(decision=NGINX)
    token = (await login(nginx, "bob"))["access"]
    for name in ("X-User-Other", "X-Auth-Role", "X-Forwarded-Foo", "x-user-admin"):
        resp = await decide(nginx, asked("GET", "/api/x", **bearer(token), **{name: "1"}))
        assert resp.status == 400 and (await resp.json())["code"] == "header_not_allowed", name
        assert name.lower() in (await resp.json())["detail"].lower() and resp.headers["Cache-Control"] == "no-store"
        anonymous = await decide(nginx, asked("GET", "/public/x", **{name: "1"}))
        assert anonymous.status == 400, name
    # what nginx does clear (by name, in the generated config) passes: the app never gets it anyway
    for name in ("X-HTTP-Method-Override", "X-Original-URL", "Remote-User", "Forwarded", "X-Forwarded-Host",
                 "X-Forwarded-Prefix", "X-User-Id", "X-Request-Id"):
        resp = await decide(nginx, asked("GET", "/api/x", **bearer(token), **{name: "evil"}))
        assert resp.status == 200, (name, await resp.text())
    metrics = await (await nginx.get("/metrics")).text()
    assert 'gateway_auth_failures_total{code="header_not_allowed"} 8.0' in metrics
    caddy = await make_gateway(decision={"front": "caddy"})
    headers = {"X-Forwarded-Method": "GET", "X-Forwarded-Uri": "/api/x", "X-Forwarded-Host": "app.example",
               "X-User-Other": "1", "X-Forwarded-Foo": "1", **bearer((await login(caddy, "bob"))["access"])}
    assert (await decide(caddy, headers)).status == 200


async def test_websocket_handshakes_are_recognised_without_upgrade_and_checked_like_proxy_mode(make_gateway, upstream):
    """Fronts drop Upgrade and Connection (hop-by-hop) from the decision request: the handshake is still one,
    a cookie-authenticated one from another origin is refused as in proxy mode, and its decision is never cached."""
    routes = [{"name": "ws", "prefix": "/ws", "upstream": upstream, "websocket": True, "headers": {"X-User-Id": "sub"},
               "websocket_token": {"query_param": "access_token"}}]
    client = await make_gateway(decision=NGINX, routes=routes, cookies={"enabled": True, "secure": False})
    resp = await client.post("/auth/token", json={"username": "alice", "password": "alice-password"})
    assert resp.status == 200
    cookie = "; ".join(f"{c.key}={c.value}" for c in client.session.cookie_jar)
    client.session.cookie_jar.clear()
    key = {"Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version": "13"}
    evil = await decide(client, asked("GET", "/ws/chat", Cookie=cookie, Origin="https://evil.example", **key))
    assert evil.status == 403 and (await evil.json())["code"] == "origin_not_allowed"
    own = await decide(client, asked("GET", "/ws/chat", Cookie=cookie, Origin="http://app.example", **key))
    assert own.status == 200 and own.headers["X-User-Id"] == "alice"
    assert own.headers["Cache-Control"] == "no-store" and own.headers["X-Accel-Expires"] == "0"
    bad = await decide(client, asked("GET", "/ws/chat", Cookie=cookie, **{**key, "Sec-WebSocket-Version": "8"}))
    assert bad.status == 426
    # the front would hand the app the token in the query: refused
    bearers = await make_gateway(decision=NGINX, routes=routes)
    token = (await login(bearers, "bob"))["access"]
    query = await decide(bearers, asked("GET", f"/ws/chat?access_token={token}", **key))
    assert query.status == 400 and "Authorization header" in (await query.json())["detail"]
    assert (await decide(bearers, asked("GET", "/ws/chat", **bearer(token), **key))).status == 200


async def test_two_authorization_headers_on_an_open_route_are_an_uncacheable_refusal(make_gateway):
    """On auth: none nothing reads Authorization before the answer's cache key does: still the route's 400, no-store."""
    client = await make_gateway(decision=NGINX)
    headers = CIMultiDict(asked("GET", "/public/x"))
    headers.add("Authorization", "Bearer a")
    headers.add("Authorization", "Bearer b")
    resp = await client.get("/auth/decide", headers=headers)
    assert resp.status == 400 and (await resp.json())["code"] == "bad_request"
    assert resp.headers["Cache-Control"] == "no-store" and resp.headers["X-Accel-Expires"] == "0"
