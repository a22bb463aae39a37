"""Signed identity for upstreams: a short-lived JWT the upstream verifies with the public JWKS."""
from __future__ import annotations

import asyncio
import copy
import re

import jwt
import pytest

from gateway.config import ConfigError, parse_config
from tests.conftest import ROOT, base_config, bearer, login
from tests.support.jwt_tools import JwksServer, idp_claims, make_key, sign

DOCS = ROOT / "docs" / "upstreams.md"


def signed_routes(upstream: str) -> list[dict]:
    return [
        {"name": "signed", "prefix": "/signed", "upstream": upstream, "identity_jwt": {},
         "headers": {"X-User-Id": "sub"}},
        {"name": "custom", "prefix": "/custom", "upstream": upstream,
         "identity_jwt": {"header": "X-Caller-Jwt", "lifetime": "30s", "audience": "billing-service"}},
        {"name": "maybe", "prefix": "/maybe", "upstream": upstream, "auth": "optional", "identity_jwt": {}},
        {"name": "api", "prefix": "/api", "upstream": upstream, "headers": {"X-User-Id": "sub"}},
        {"name": "public", "prefix": "/public", "upstream": upstream, "auth": "none"},
    ]


@pytest.fixture
async def signed_gateway(make_gateway, upstream, tmp_path):
    key = make_key(tmp_path, "ES256", "gw-es")
    return await make_gateway(tokens={"secret": None, "keys": [key.spec(active=True)]}, routes=signed_routes(upstream))


async def verify_like_an_upstream(gateway, token: str, audience: str, idps: tuple[str, ...] = ()) -> dict:
    """The documented upstream check (PyJWKClient over HTTP, run off the event loop)."""
    namespace: dict = {}
    exec(_docs_snippet(), namespace)  # defines verify_identity(token, jwks_url, issuer, audience, idps)
    url = str(gateway.make_url("/.well-known/jwks.json"))
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(None, namespace["verify_identity"], token, url, "test-gw", audience, idps)


def _docs_snippet() -> str:
    text = DOCS.read_text(encoding="utf-8")
    match = re.search(r"<!-- upstream-verify -->\s*```python\n(.*?)```", text, re.S)
    assert match, "docs/upstreams.md lost its upstream verification snippet"
    return match.group(1)


async def test_upstream_receives_a_verifiable_identity(signed_gateway, upstream):
    body = await login(signed_gateway)
    resp = await signed_gateway.get("/signed/x", headers=bearer(body["access"]))
    assert resp.status == 200
    headers = (await resp.json())["headers"]
    identity = headers["X-Gateway-Identity"]
    claims = await verify_like_an_upstream(signed_gateway, identity, upstream)
    access = jwt.decode(body["access"], options={"verify_signature": False})
    assert claims["sub"] == "alice" and claims["roles"] == ["admin", "user"] and claims["email"] == "alice@example.com"
    assert claims["aud"] == upstream and claims["iss"] == "test-gw" and claims["idp"] == "test-gw"
    assert claims["token_type"] == "identity" and claims["jti"] != access["jti"]
    assert 60 <= claims["exp"] - claims["iat"] <= 61 and claims["exp"] <= access["exp"]
    assert "fid" not in claims
    assert jwt.get_unverified_header(identity)["kid"] == "gw-es"


async def test_identity_is_reused_for_the_same_token_and_route(signed_gateway):
    body = await login(signed_gateway)
    first = (await (await signed_gateway.get("/signed/a", headers=bearer(body["access"]))).json())["headers"]
    second = (await (await signed_gateway.get("/signed/b", headers=bearer(body["access"]))).json())["headers"]
    assert first["X-Gateway-Identity"] == second["X-Gateway-Identity"]
    other = await login(signed_gateway)
    third = (await (await signed_gateway.get("/signed/a", headers=bearer(other["access"]))).json())["headers"]
    assert third["X-Gateway-Identity"] != first["X-Gateway-Identity"]


async def test_custom_header_lifetime_and_audience(signed_gateway):
    body = await login(signed_gateway, "bob")
    headers = (await (await signed_gateway.get("/custom/x", headers=bearer(body["access"]))).json())["headers"]
    assert "X-Gateway-Identity" not in headers
    claims = await verify_like_an_upstream(signed_gateway, headers["X-Caller-Jwt"], "billing-service")
    assert claims["sub"] == "bob" and 30 <= claims["exp"] - claims["iat"] <= 31


async def test_clients_cannot_send_their_own_identity_header(signed_gateway, tmp_path):
    """Stripped on every route, whether or not the route signs, and for the custom name too."""
    forged_key = make_key(tmp_path / "forger", "ES256", "gw-es", material="forger")
    forged = sign(forged_key, {"sub": "admin", "aud": "x", "iss": "test-gw"})
    spoof = {"X-Gateway-Identity": forged, "X-Caller-Jwt": forged, "x-gateway-identity": "lowercase too"}
    body = await login(signed_gateway)
    for path, auth in (("/public/x", {}), ("/api/x", bearer(body["access"])), ("/maybe/x", {}),
                       ("/signed/x", bearer(body["access"])), ("/custom/x", bearer(body["access"]))):
        resp = await signed_gateway.get(path, headers={**spoof, **auth})
        assert resp.status == 200, path
        seen = (await resp.json())["headers"]
        values = [v for k, v in seen.items() if k.lower() in {"x-gateway-identity", "x-caller-jwt"}]
        assert forged not in values and "lowercase too" not in values, path
    # an optional route without a token gets no identity at all
    seen = (await (await signed_gateway.get("/maybe/x")).json())["headers"]
    assert "X-Gateway-Identity" not in seen


async def test_identity_token_is_not_a_bearer(signed_gateway):
    body = await login(signed_gateway)
    identity = (await (await signed_gateway.get("/signed/x", headers=bearer(body["access"]))).json())["headers"][
        "X-Gateway-Identity"]
    for path in ("/api/x", "/auth/me"):
        resp = await signed_gateway.get(path, headers=bearer(identity))
        assert resp.status == 401 and (await resp.json())["code"] == "token_not_valid"
    resp = await signed_gateway.post("/auth/token/refresh", json={"refresh": identity})
    assert resp.status == 401


async def test_external_callers_get_a_gateway_signed_identity(make_gateway, aiohttp_server, upstream, tmp_path):
    idp_key = make_key(tmp_path, "RS256", "idp-rsa")
    jwks = JwksServer([idp_key.public_jwk()])
    server = await aiohttp_server(jwks.app())
    gw_key = make_key(tmp_path, "EdDSA", "gw-ed")
    gateway = await make_gateway(
        tokens={"secret": None, "keys": [gw_key.spec(active=True)]},
        external_issuers={"idp": {"issuer": "https://idp.test", "audience": "gw", "jwks_url": str(server.make_url("/jwks")),
                                  "claims": {"email": "email"}}},
        routes=[{"name": "ext", "prefix": "/ext", "upstream": upstream, "issuers": ["idp"], "identity_jwt": {}}],
    )
    token = sign(idp_key, idp_claims("https://idp.test", "gw", email="e@x.test", internal="dropped"))
    headers = (await (await gateway.get("/ext/x", headers=bearer(token))).json())["headers"]
    with pytest.raises(jwt.InvalidTokenError):  # by default an upstream accepts the gateway's own users only
        await verify_like_an_upstream(gateway, headers["X-Gateway-Identity"], upstream)
    claims = await verify_like_an_upstream(gateway, headers["X-Gateway-Identity"], upstream, ("test-gw", "https://idp.test"))
    assert claims["sub"] == "idp:ext-user" and claims["email"] == "e@x.test" and claims["idp"] == "https://idp.test"
    assert claims["iss"] == "test-gw" and "internal" not in claims


async def test_an_expired_identity_fails_upstream_verification(make_gateway, upstream, tmp_path):
    key = make_key(tmp_path, "ES256", "gw-es")
    gateway = await make_gateway(tokens={"secret": None, "keys": [key.spec(active=True)], "leeway": "0s"},
                                 routes=[{"name": "s", "prefix": "/s", "upstream": upstream,
                                          "identity_jwt": {"lifetime": "1s"}}])
    body = await login(gateway)
    identity = (await (await gateway.get("/s/x", headers=bearer(body["access"]))).json())["headers"]["X-Gateway-Identity"]
    await asyncio.sleep(2.1)
    with pytest.raises(jwt.ExpiredSignatureError):
        await verify_like_an_upstream(gateway, identity, upstream)
    fresh = (await (await gateway.get("/s/x", headers=bearer(body["access"]))).json())["headers"]["X-Gateway-Identity"]
    assert fresh != identity and (await verify_like_an_upstream(gateway, fresh, upstream))["sub"] == "alice"


def test_identity_config_errors(users_file, tmp_path):
    def problems(routes, **overrides):
        raw = base_config("http://127.0.0.1:1", users_file, routes=routes, **overrides)
        with pytest.raises(ConfigError) as info:
            parse_config(copy.deepcopy(raw), tmp_path)
        return "\n".join(info.value.problems)

    route = {"name": "r", "prefix": "/r", "upstream": "http://127.0.0.1:1"}
    assert "needs an asymmetric active key" in problems([{**route, "identity_jwt": {}}])
    key = make_key(tmp_path, "ES256", "k")
    asym = {"tokens": {"secret": None, "keys": [key.spec(active=True)]}}
    assert "between 1s and 10m" in problems([{**route, "identity_jwt": {"lifetime": "1h"}}], **asym)
    assert "not a header the gateway may inject" in problems([{**route, "identity_jwt": {"header": "Authorization"}}], **asym)
    assert "no identity to sign" in problems([{**route, "auth": "none", "identity_jwt": {}}], **asym)
    assert "already used by headers" in problems(
        [{**route, "identity_jwt": {"header": "X-Who"}, "headers": {"X-Who": "sub"}}], **asym)


async def test_websocket_routes_carry_the_identity_and_accept_external_issuers(make_gateway, aiohttp_server, tmp_path):
    """The handshake gets the same treatment as a request: trusted issuers, signed identity, spoofs stripped."""
    from aiohttp import WSMsgType, web

    seen: list[dict] = []

    async def ws_handler(request: web.Request) -> web.StreamResponse:
        seen.append(dict(request.headers))
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for msg in ws:
            if msg.type is WSMsgType.TEXT:
                await ws.send_str(msg.data)
        return ws

    app = web.Application()
    app.router.add_get("/{tail:.*}", ws_handler)
    upstream = str((await aiohttp_server(app)).make_url("")).rstrip("/")
    idp_key = make_key(tmp_path, "ES256", "idp-ws")
    jwks = JwksServer([idp_key.public_jwk()])
    jwks_url = str((await aiohttp_server(jwks.app())).make_url("/jwks"))
    gw_key = make_key(tmp_path, "ES256", "gw-es")
    gateway = await make_gateway(
        tokens={"secret": None, "keys": [gw_key.spec(active=True)]},
        external_issuers={"idp": {"issuer": "https://idp.test", "audience": "gw", "jwks_url": jwks_url,
                                  "algorithms": ["ES256"]}},
        routes=[{"name": "ws", "prefix": "/ws", "upstream": upstream, "websocket": True,
                 "issuers": ["gateway", "idp"], "identity_jwt": {}}],
    )
    for token, sub, idp in ((sign(idp_key, idp_claims("https://idp.test", "gw")), "idp:ext-user", "https://idp.test"),
                            ((await login(gateway))["access"], "alice", "test-gw")):
        headers = {**bearer(token), "X-Gateway-Identity": "forged"}
        async with gateway.ws_connect("/ws/x", headers=headers) as ws:
            await ws.send_str("hi")
            assert (await ws.receive(timeout=5)).data == "hi"
        identity = seen[-1]["X-Gateway-Identity"]
        assert identity != "forged"
        claims = await verify_like_an_upstream(gateway, identity, upstream, ("test-gw", "https://idp.test"))
        assert claims["sub"] == sub and claims["idp"] == idp
