"""OIDC sign-in against a provider on a real socket whose ID tokens the tests script (tests/support/local_op.py):
the whole callback with every hostile ID token, state and code replay, delivery by cookie or one-time
code, logout, back-channel logout, provider outages, XHR vs navigation on routes with ``login:``."""
from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from pathlib import Path
from typing import Any, Awaitable, Callable

import aiohttp
import jwt
import pytest
from aiohttp.test_utils import TestClient, TestServer
from yarl import URL

from gateway.app import create_app
from gateway.auth.admin_keys import generate_admin_key
from gateway.config import parse_config
from gateway.runtime import GATEWAY
from gateway.server.admin import create_admin_app
from tests.conftest import SECRET, base_config, bearer
from tests.support.jwt_tools import make_key
from tests.support.local_op import LocalOp
from tests.support.processes import free_port

PUBLIC = "http://gateway.test"
CALLBACK = "/auth/oidc/local/callback"


@pytest.fixture
async def op(aiohttp_server: Callable[..., Awaitable[TestServer]], tmp_path: Path) -> LocalOp:
    provider = LocalOp(make_key(tmp_path / "op", "RS256", kid="op-1"))
    server = await aiohttp_server(provider.app())
    provider.issuer = str(server.make_url("")).rstrip("/")
    return provider


@pytest.fixture
def oidc_gateway(aiohttp_client: Callable[..., Awaitable[TestClient]], upstream: str, users_file: Path, tmp_path: Path,
                 op: LocalOp) -> Callable[..., Awaitable[TestClient]]:
    async def make(provider: dict[str, Any] | None = None, **overrides: Any) -> TestClient:
        spec = {"issuer": op.issuer, "client_id": op.client_id, "client_secret": op.client_secret,
                "claims": {"email": "email", "name": "name", "groups": "groups"}, "end_session": True, **(provider or {})}
        oidc = {"providers": {"local": spec}, "timeout": "2s", "post_logout_redirect_uris": [f"{PUBLIC}/bye"],
                **overrides.pop("oidc", {})}
        raw = base_config(upstream, users_file, public_url=PUBLIC, oidc=oidc, **overrides)
        raw.setdefault("cookies", {})
        raw["cookies"] = {"enabled": True, "secure": False, "same_site": "Lax", **raw["cookies"]}
        raw["routes"] = [{"name": "app", "prefix": "/app", "upstream": upstream, "login": "local",
                          "headers": {"X-User-Id": "sub", "X-User-Email": "email", "X-User-Groups": "groups"}},
                         *raw["routes"]]
        return await aiohttp_client(create_app(parse_config(raw, tmp_path)))

    return make


async def start(client: TestClient, next_url: str = "/app/home", **params: str) -> str:
    """The authorization URL the gateway's login sends the browser to."""
    resp = await client.get("/auth/oidc/local/login", params={"next": next_url, **params}, allow_redirects=False)
    assert resp.status == 302, await resp.text()
    return resp.headers["Location"]


async def at_provider(authorize: str) -> str:
    """The callback path and query the provider sends the browser back to."""
    async with aiohttp.ClientSession() as browser:
        resp = await browser.get(authorize, allow_redirects=False)
        assert resp.status == 302
        return URL(resp.headers["Location"]).path_qs


async def sign_in(client: TestClient, next_url: str = "/app/home", **params: str) -> aiohttp.ClientResponse:
    callback = await at_provider(await start(client, next_url, **params))
    return await client.get(callback, allow_redirects=False)


async def code_session(client: TestClient) -> dict[str, Any]:
    """Bearer tokens through deliver=code and the exchange."""
    resp = await sign_in(client, deliver="code")
    assert resp.status == 302, await resp.text()
    code = URL(resp.headers["Location"]).fragment.removeprefix("gateway_code=")
    client.session.cookie_jar.clear()  # a bearer client: tokens, no cookies
    answer = await client.post("/auth/oidc/exchange", json={"code": code})
    assert answer.status == 200, await answer.text()
    return await answer.json()


# -- the honest flow ----------------------------------------------------------------------------

async def test_cookie_mode_sign_in_reaches_the_route_with_identity(oidc_gateway, op):
    client = await oidc_gateway()
    authorize = URL(await start(client))
    q = authorize.query
    assert str(authorize.origin()) == op.issuer and q["response_type"] == "code" and q["client_id"] == "gw"
    assert q["code_challenge_method"] == "S256" and len(q["code_challenge"]) == 43
    assert q["redirect_uri"] == PUBLIC + CALLBACK and q["scope"] == "openid email profile"
    assert len(q["state"]) >= 43 and len(q["nonce"]) >= 43 and q["state"] != q["nonce"]
    resp = await client.get(await at_provider(str(authorize)), allow_redirects=False)
    assert resp.status == 302 and resp.headers["Location"] == "/app/home"
    assert {"gw_access", "gw_refresh", "gw_csrf"} <= {c.key for c in client.session.cookie_jar}
    echoed = await (await client.get("/app/home")).json()
    assert echoed["headers"]["X-User-Id"] == "local:u-1"
    assert echoed["headers"]["X-User-Email"] == "ann@example.com" and echoed["headers"]["X-User-Groups"] == "staff"
    assert op.token_auth == ["client_secret_basic"]


async def test_strict_cookies_arrive_through_a_same_site_continue_page(oidc_gateway):
    client = await oidc_gateway(cookies={"same_site": "Strict"})
    resp = await sign_in(client)
    assert resp.status == 200 and resp.content_type == "text/html"
    page = await resp.text()
    assert '<meta http-equiv="refresh" content="0;url=/app/home">' in page and "<script" not in page
    assert "default-src 'none'" in resp.headers["Content-Security-Policy"]
    assert (await client.get("/app/home")).status == 200


async def test_code_delivery_exchange_is_single_use_and_tokens_never_in_a_url(oidc_gateway):
    client = await oidc_gateway(cookies={"enabled": False})
    resp = await sign_in(client, next_url="/app/spa#old")
    location = resp.headers["Location"]
    assert resp.status == 302 and location.startswith("/app/spa#gateway_code=") and "ey" not in location
    code = URL(location).fragment.removeprefix("gateway_code=")
    first = await client.post("/auth/oidc/exchange", data={"code": code})
    body = await first.json()
    assert first.status == 200 and set(body) == {"access", "refresh", "token_type", "expires_in"}  # as POST /auth/token
    again = await client.post("/auth/oidc/exchange", json={"code": code})
    assert again.status == 400 and (await again.json())["code"] == "invalid_code"
    assert (await client.get("/app/x", headers=bearer(body["access"]))).status == 200


async def test_cookie_mode_exchange_takes_no_cross_site_form(oidc_gateway):
    """Login CSRF: the attacker's own code, posted by a form on the attacker's site from the victim's
    browser, would set the attacker's session cookies there. In cookie mode the exchange takes JSON only."""
    client = await oidc_gateway()  # cookie mode
    resp = await sign_in(client, deliver="code")  # the attacker signs in and keeps the code
    code = URL(resp.headers["Location"]).fragment.removeprefix("gateway_code=")
    client.session.cookie_jar.clear()  # the victim's browser
    for form in ({"data": {"code": code}}, {"data": f"code={code}", "headers": {"Content-Type": "text/plain"}}):
        refused = await client.post("/auth/oidc/exchange", **form)
        assert refused.status == 415 and (await refused.json())["code"] == "bad_request"
        assert "application/json" in (await refused.json())["detail"]
        assert not {"gw_access", "gw_refresh", "gw_csrf"} & {c.key for c in client.session.cookie_jar}
        assert "Set-Cookie" not in refused.headers
    accepted = await client.post("/auth/oidc/exchange", json={"code": code})  # the gateway's own page: JSON
    assert accepted.status == 200, await accepted.text()
    assert {"gw_access", "gw_refresh", "gw_csrf"} <= {c.key for c in client.session.cookie_jar}


async def test_refresh_rotation_and_reuse_detection_after_an_oidc_sign_in(oidc_gateway):
    client = await oidc_gateway(tokens={"refresh_grace": "0s"}, cookies={"enabled": False})
    tokens = await code_session(client)
    rotated = await client.post("/auth/token/refresh", json={"refresh": tokens["refresh"]})
    assert rotated.status == 200
    new = await rotated.json()
    assert jwt.decode(new["access"], options={"verify_signature": False})["sub"] == "local:u-1"
    reuse = await client.post("/auth/token/refresh", json={"refresh": tokens["refresh"]})
    assert reuse.status == 401 and (await reuse.json())["code"] == "token_reused"
    assert (await client.post("/auth/token/refresh", json={"refresh": new["refresh"]})).status == 401


async def test_a_local_user_of_the_same_name_never_takes_over_a_provider_session(oidc_gateway, op):
    op.user["sub"] = "alice"
    client = await oidc_gateway(cookies={"enabled": False})
    tokens = await code_session(client)
    claims = jwt.decode(tokens["access"], options={"verify_signature": False})
    assert claims["sub"] == "local:alice" and claims["idp"] == "local" and "roles" not in claims
    refreshed = await (await client.post("/auth/token/refresh", json={"refresh": tokens["refresh"]})).json()
    again = jwt.decode(refreshed["access"], options={"verify_signature": False})
    assert again["sub"] == "local:alice" and again["email"] == "ann@example.com" and "roles" not in again


async def test_require_user_source_makes_the_session_the_local_users(oidc_gateway, op):
    op.user["preferred_username"] = "alice"
    client = await oidc_gateway({"require_user_source": True, "user_source_claim": "preferred_username"},
                                cookies={"enabled": False})
    tokens = await code_session(client)
    claims = jwt.decode(tokens["access"], options={"verify_signature": False})
    assert claims["sub"] == "alice" and claims["roles"] == ["admin", "user"] and claims["idp"] == "local"
    refreshed = await (await client.post("/auth/token/refresh", json={"refresh": tokens["refresh"]})).json()
    assert jwt.decode(refreshed["access"], options={"verify_signature": False})["sub"] == "alice"
    op.user["preferred_username"] = "stranger"
    resp = await sign_in(client)
    assert resp.status == 403 and "user_not_found" in await resp.text()


async def test_providers_list(oidc_gateway):
    client = await oidc_gateway({"display_name": "Local <SSO>"})
    resp = await client.get("/auth/oidc/providers")
    assert await resp.json() == [{"name": "local", "display_name": "Local <SSO>", "login_url": "/auth/oidc/local/login"}]


# -- state, binding, replay -------------------------------------------------------------------

async def test_missing_forged_and_replayed_state_are_refused(oidc_gateway):
    client = await oidc_gateway()
    callback = await at_provider(await start(client))
    no_state = URL(callback).without_query_params("state")
    assert (await client.get(str(no_state), allow_redirects=False)).status == 400
    forged = URL(callback).update_query(state="forged-" + "x" * 40)
    resp = await client.get(str(forged), allow_redirects=False)
    assert resp.status == 400 and resp.content_type == "text/html" and "state_invalid" in await resp.text()
    assert (await client.get(callback, allow_redirects=False)).status == 302
    replay = await client.get(callback, allow_redirects=False)  # the same answer again: state and nonce are spent
    assert replay.status == 400 and "state_invalid" in await replay.text()


async def test_a_callback_carried_to_another_browser_is_refused(oidc_gateway, aiohttp_client):
    client = await oidc_gateway()
    callback = await at_provider(await start(client))
    client.session.cookie_jar.clear()  # the victim's browser: no binding cookie
    resp = await client.get(callback, allow_redirects=False)
    assert resp.status == 400 and "another browser" in await resp.text()
    assert "gw_access" not in {c.key for c in client.session.cookie_jar}


async def test_a_reused_code_is_refused_by_the_provider(oidc_gateway, op):
    client = await oidc_gateway()
    callback = await at_provider(await start(client))
    code = URL(callback).query["code"]
    first = await client.get(callback, allow_redirects=False)
    assert first.status == 302
    # A second sign-in whose answer carries the spent code: state valid, code refused by the provider.
    second = URL(await at_provider(await start(client))).update_query(code=code)
    resp = await client.get(str(second), allow_redirects=False)
    assert resp.status == 401 and "code_rejected" in await resp.text()


async def test_a_callback_carried_to_another_providers_path_is_refused(oidc_gateway, op):
    second = {"issuer": op.issuer, "client_id": op.client_id, "client_secret": op.client_secret}
    client = await oidc_gateway(oidc={"providers": {"local": {**second, "end_session": True}, "other": second}})
    callback = URL(await at_provider(await start(client)))
    resp = await client.get("/auth/oidc/other/callback?" + callback.query_string, allow_redirects=False)
    assert resp.status == 400 and "another provider" in await resp.text()


async def test_rfc9207_iss_parameter(oidc_gateway, op):
    op.iss_parameter = True
    client = await oidc_gateway()
    assert (await sign_in(client)).status == 302
    callback = URL(await at_provider(await start(client))).update_query(iss="https://evil.example")
    resp = await client.get(str(callback), allow_redirects=False)
    assert resp.status == 400 and "issuer_mismatch" in await resp.text()
    missing = URL(await at_provider(await start(client))).without_query_params("iss")
    assert (await client.get(str(missing), allow_redirects=False)).status == 400


async def test_the_provider_saying_no_is_a_page(oidc_gateway):
    client = await oidc_gateway()
    callback = URL(await at_provider(await start(client)))
    denied = callback.with_query(state=callback.query["state"], error="access_denied")
    resp = await client.get(str(denied), allow_redirects=False)
    assert resp.status == 401 and "provider_denied" in await resp.text()


# -- hostile ID tokens ------------------------------------------------------------------------

def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _alg_none(claims: dict[str, Any], header: dict[str, Any]) -> str:
    return f"{_b64({**header, 'alg': 'none'})}.{_b64(claims)}."


def _hs256_with_public_key(op: LocalOp) -> Callable[[dict[str, Any], dict[str, Any]], str]:
    def forge(claims: dict[str, Any], header: dict[str, Any]) -> str:
        public_pem = op.key.public_pem or b""
        signing = f"{_b64({**header, 'alg': 'HS256', 'typ': 'JWT'})}.{_b64(claims)}".encode()
        import hashlib
        import hmac
        signature = base64.urlsafe_b64encode(hmac.new(public_pem, signing, hashlib.sha256).digest()).rstrip(b"=")
        return f"{signing.decode()}.{signature.decode()}"
    return forge


HOSTILE: dict[str, Callable[[LocalOp], None]] = {
    "alg none": lambda op: setattr(op, "forge", _alg_none),
    "HS256 keyed with the public key": lambda op: setattr(op, "forge", _hs256_with_public_key(op)),
    "another issuer": lambda op: op.claims_override.update(iss="https://other.example"),
    "another audience": lambda op: op.claims_override.update(aud="someone-else"),
    "several audiences without azp": lambda op: op.claims_override.update(aud=["gw", "other"]),
    "azp of another client": lambda op: op.claims_override.update(aud=["gw", "other"], azp="other"),
    "wrong nonce": lambda op: op.claims_override.update(nonce="not-the-nonce"),
    "no nonce": lambda op: op.claims_override.update(nonce=None),
    "expired": lambda op: op.claims_override.update(exp=int(time.time()) - 3600, iat=int(time.time()) - 3700),
    "issued in the future": lambda op: op.claims_override.update(iat=int(time.time()) + 3600),
    "issued long ago": lambda op: op.claims_override.update(iat=int(time.time()) - 7200),
    "no sub": lambda op: op.user.update(sub=None),
    "unknown kid": lambda op: op.header_override.update(kid="nobody"),
    "jku header": lambda op: op.header_override.update(jku="https://evil.example/jwks"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
async def test_hostile_id_tokens_never_make_a_session(oidc_gateway, op, case):
    client = await oidc_gateway()
    HOSTILE[case](op)
    resp = await sign_in(client)
    assert resp.status == 401, (case, resp.status)
    page = await resp.text()
    assert resp.content_type == "text/html" and "Traceback" not in page
    assert not {"gw_access", "gw_refresh"} & {c.key for c in client.session.cookie_jar}


async def test_another_provider_in_the_discovery_document_is_refused(oidc_gateway, op):
    op.discovery_issuer = "https://other.example"
    client = await oidc_gateway()
    resp = await client.get("/auth/oidc/local/login", allow_redirects=False)
    assert resp.status == 502 and resp.content_type == "text/html"


async def test_a_rotated_provider_key_is_fetched_by_its_kid(oidc_gateway, op, tmp_path):
    client = await oidc_gateway()
    assert (await sign_in(client)).status == 302
    op.key = make_key(tmp_path / "op2", "RS256", kid="op-2", material="rotated")
    await asyncio.sleep(1.1)  # past the kid re-fetch interval
    assert (await sign_in(client)).status == 302
    assert op.requests.count("jwks") == 2


# -- allow-lists and claims -------------------------------------------------------------------

async def test_allow_lists(oidc_gateway, op):
    client = await oidc_gateway({"allowed_email_domains": ["example.com"], "allowed_groups": ["staff", "ops"]})
    assert (await sign_in(client)).status == 302
    op.user["groups"] = ["guests"]
    resp = await sign_in(client)
    assert resp.status == 403 and "group_not_allowed" in await resp.text()
    op.user.update(groups=["ops"], email="eve@evil.example")
    assert (await sign_in(client)).status == 403
    op.user.update(email="eve@example.com", email_verified=False)  # typed by the user, never checked
    resp = await sign_in(client)
    assert resp.status == 403 and "email_domain_not_allowed" in await resp.text()


async def test_an_unverified_email_never_reaches_the_session(oidc_gateway, op):
    op.user["email_verified"] = False
    client = await oidc_gateway(cookies={"enabled": False})
    tokens = await code_session(client)
    assert "email" not in jwt.decode(tokens["access"], options={"verify_signature": False})


async def test_userinfo_fills_claims_and_must_be_about_the_same_user(oidc_gateway, op):
    op.claims_override.update(groups=None)  # the ID token lacks groups; userinfo has them
    client = await oidc_gateway({"userinfo": True}, cookies={"enabled": False})
    tokens = await code_session(client)
    assert jwt.decode(tokens["access"], options={"verify_signature": False})["groups"] == ["staff"]


async def test_a_mapped_claim_nobody_releases_is_logged_once_without_the_userinfo_hint(oidc_gateway, op, caplog):
    caplog.set_level(logging.INFO, "gateway.auth.oidc")
    client = await oidc_gateway({"userinfo": True, "claims": {"email": "email", "roles": "realm_access.roles"}},
                                cookies={"enabled": False})
    for _ in range(3):
        await code_session(client)
    lines = [r.getMessage() for r in caplog.records if "not released" in r.getMessage()]
    assert len(lines) == 1 and "roles (realm_access.roles)" in lines[0] and "email" not in lines[0].split(";")[0]
    assert "userinfo: true" not in lines[0] and "scopes requested (openid email profile)" in lines[0]


async def test_private_key_jwt_client_authentication(oidc_gateway, op, tmp_path):
    client_key = make_key(tmp_path / "client", "RS256", kid="gw-client", material="client")
    op.public_jwk = client_key.public_jwk()
    client = await oidc_gateway({"client_secret": None, "private_key_file": str(client_key.private_path),
                                 "private_key_id": "gw-client"})
    assert (await sign_in(client)).status == 302
    assert op.token_auth == ["private_key_jwt"]


async def test_client_secret_post(oidc_gateway, op):
    client = await oidc_gateway({"client_auth": "client_secret_post"})
    assert (await sign_in(client)).status == 302 and op.token_auth == ["client_secret_post"]


async def test_calls_to_the_provider_reuse_one_kept_alive_connection(oidc_gateway, op):
    client = await oidc_gateway()
    for _ in range(3):
        assert (await sign_in(client)).status == 302
    assert len(op.token_peers) == 3 and len(set(op.token_peers)) == 1  # no new TCP (and TLS) handshake per callback


# -- outages --------------------------------------------------------------------------------

async def test_provider_down_is_a_502_page(oidc_gateway, op):
    op.issuer = f"http://127.0.0.1:{free_port()}"  # nobody listens there
    client = await oidc_gateway()
    resp = await client.get("/auth/oidc/local/login", allow_redirects=False)
    assert resp.status == 502 and "provider_unavailable" in await resp.text()


async def test_a_slow_token_endpoint_is_a_504_page_within_the_timeout(oidc_gateway, op):
    client = await oidc_gateway(oidc={"timeout": "0.5s"})
    callback = await at_provider(await start(client))
    op.token_delay = 5
    started = asyncio.get_running_loop().time()
    resp = await client.get(callback, allow_redirects=False)
    assert resp.status == 504 and "provider_timeout" in await resp.text()
    assert asyncio.get_running_loop().time() - started < 4  # bounded by oidc.timeout, not by the provider


async def test_a_broken_token_endpoint_is_a_502_page(oidc_gateway, op):
    client = await oidc_gateway()
    callback = await at_provider(await start(client))
    op.token_status = 500
    resp = await client.get(callback, allow_redirects=False)
    assert resp.status == 502 and "<html" in await resp.text()


async def test_sign_in_starts_count_as_login_attempts_of_the_address(oidc_gateway):
    client = await oidc_gateway(login_throttle={"rate_per_ip": 2})
    for _ in range(2):
        await start(client)
    resp = await client.get("/auth/oidc/local/login", allow_redirects=False)
    assert resp.status == 429 and resp.headers["Retry-After"] and "rate_limited" in await resp.text()


# -- next -------------------------------------------------------------------------------------

@pytest.mark.parametrize("bad", ["//evil.example", "https:evil.example", "/\\evil.example", "https://evil.example/",
                                 "/%2F%2Fevil.example", "/%5Cevil.example", "/\t/evil.example", "/..//evil.example"])
async def test_next_off_site_is_refused_at_login(oidc_gateway, bad):
    client = await oidc_gateway()
    resp = await client.get("/auth/oidc/local/login", params={"next": bad}, allow_redirects=False)
    assert resp.status == 400 and "next_not_allowed" in await resp.text()


async def test_next_to_an_allowed_origin(oidc_gateway):
    client = await oidc_gateway(oidc={"allowed_redirect_origins": ["https://spa.example.com"]}, cookies={"enabled": False})
    resp = await sign_in(client, next_url="https://spa.example.com/app")
    assert resp.headers["Location"].startswith("https://spa.example.com/app#gateway_code=")


# -- routes with login: navigation vs fetch -------------------------------------------------------

async def test_navigation_is_redirected_and_fetch_gets_401_with_login_url(oidc_gateway):
    client = await oidc_gateway()
    nav = await client.get("/app/page?x=1", headers={"Sec-Fetch-Mode": "navigate", "Accept": "text/html"},
                           allow_redirects=False)
    assert nav.status == 302 and nav.headers["Location"] == "/auth/oidc/local/login?next=/app/page%3Fx%3D1"
    for headers in ({"Sec-Fetch-Mode": "cors", "Accept": "text/html"}, {"Accept": "application/json"},
                    {"Accept": "text/html", "X-Requested-With": "XMLHttpRequest"}):
        resp = await client.get("/app/page", headers=headers, allow_redirects=False)
        body = await resp.json()
        assert resp.status == 401 and body["login_url"] == "/auth/oidc/local/login?next=/app/page"
    plain = await client.get("/api/x", headers={"Sec-Fetch-Mode": "navigate"}, allow_redirects=False)
    assert plain.status == 401  # a route without login: answers as before


# -- logout -------------------------------------------------------------------------------------

async def test_cookie_logout_ends_the_session_and_goes_to_the_providers_end_session(oidc_gateway, op):
    client = await oidc_gateway()
    await sign_in(client)
    resp = await client.get("/auth/oidc/logout", params={"next": "/bye"}, allow_redirects=False)
    assert resp.status == 302
    target = URL(resp.headers["Location"])
    assert str(target.with_query(None)) == op.url("/end_session")
    assert target.query["post_logout_redirect_uri"] == f"{PUBLIC}/bye" and target.query["client_id"] == "gw"
    hint = jwt.decode(target.query["id_token_hint"], options={"verify_signature": False})
    assert hint["iss"] == op.issuer and hint["sub"] == "u-1"
    assert (await client.get("/app/home", headers={"Accept": "application/json"})).status == 401


async def test_bearer_logout_answers_the_end_session_url(oidc_gateway, op):
    client = await oidc_gateway(cookies={"enabled": False})
    tokens = await code_session(client)
    resp = await client.post("/auth/oidc/logout", json={"refresh": tokens["refresh"]})
    url = (await resp.json())["end_session_url"]
    assert resp.status == 200 and url.startswith(op.url("/end_session?"))
    assert (await client.post("/auth/token/refresh", json={"refresh": tokens["refresh"]})).status == 401


async def test_backchannel_logout_revokes_the_sessions_of_the_sid(oidc_gateway, op):
    client = await oidc_gateway(cookies={"enabled": False})
    tokens, other = await code_session(client), await code_session(client)
    token = op.logout_token()
    resp = await client.post("/auth/oidc/local/backchannel-logout", data={"logout_token": token})
    assert resp.status == 200 and resp.headers["Cache-Control"] == "no-store"
    for session in (tokens, other):
        assert (await client.get("/app/x", headers=bearer(session["access"]))).status == 401
        assert (await client.post("/auth/token/refresh", json={"refresh": session["refresh"]})).status == 401
    replay = await client.post("/auth/oidc/local/backchannel-logout", data={"logout_token": token})
    assert replay.status == 400 and (await replay.json())["error"] == "invalid_request"


async def test_sign_in_and_backchannel_logout_are_audited_without_the_code_or_tokens(oidc_gateway, op, tmp_path):
    path = tmp_path / "audit.jsonl"
    client = await oidc_gateway(cookies={"enabled": False}, audit={"sink": "file", "path": str(path)})
    resp = await sign_in(client, deliver="code")
    code = URL(resp.headers["Location"]).fragment.removeprefix("gateway_code=")
    answer = await client.post("/auth/oidc/exchange", json={"code": code})
    tokens = await answer.json()
    logout_token = op.logout_token()
    assert (await client.post("/auth/oidc/local/backchannel-logout", data={"logout_token": logout_token})).status == 200
    events = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(e["event"], e["reason"]) for e in events] == [("login.succeeded", None), ("session.revoked", "backchannel_logout")]
    assert events[0]["subject"] == "local:u-1" and events[0]["method"] == "oidc" and events[0]["provider"] == "local"
    assert events[1]["session"] == events[0]["session"] and events[1]["provider"] == "local"
    written = path.read_text()
    assert not [s for s in (code, tokens["access"], tokens["refresh"], logout_token) if s in written]


@pytest.mark.parametrize("claims", [{"events": None}, {"nonce": "n"}, {"sid": None}, {"jti": None},
                                    {"aud": "other"}, {"iss": "https://other.example"}])
async def test_invalid_logout_tokens_are_400(oidc_gateway, op, claims):
    client = await oidc_gateway(cookies={"enabled": False})
    tokens = await code_session(client)
    resp = await client.post("/auth/oidc/local/backchannel-logout", data={"logout_token": op.logout_token(**claims)})
    assert resp.status == 400
    assert (await client.get("/app/x", headers=bearer(tokens["access"]))).status == 200


async def test_backchannel_logout_by_sub(oidc_gateway, op):
    client = await oidc_gateway(cookies={"enabled": False})
    tokens = await code_session(client)
    token = op.logout_token(sid=None, sub="u-1")
    assert (await client.post("/auth/oidc/local/backchannel-logout", data={"logout_token": token})).status == 200
    assert (await client.get("/app/x", headers=bearer(tokens["access"]))).status == 401


# -- observability ------------------------------------------------------------------------------

async def test_sign_ins_are_counted_and_no_secret_is_logged(oidc_gateway, op, caplog):
    caplog.set_level(logging.DEBUG)
    client = await oidc_gateway()
    callback = await at_provider(await start(client))
    await client.get(callback, allow_redirects=False)
    op.claims_override.update(nonce="wrong")
    await sign_in(client)
    metrics = await (await client.get("/metrics")).text()
    assert 'gateway_oidc_logins_total{provider="local",result="success"} 1.0' in metrics
    assert 'gateway_oidc_logins_total{provider="local",result="id_token_invalid"} 1.0' in metrics
    query = URL(callback).query
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("gateway"))  # aiohttp's test log is off in production
    for secret in (query["code"], query["state"], op.client_secret, SECRET):
        assert secret not in logged


async def test_config_problems(tmp_path, upstream, users_file, op):
    raw = base_config(upstream, users_file, oidc={"providers": {"local": {"issuer": op.issuer, "client_id": "gw",
                                                                           "client_secret": "s"}}})
    raw["routes"][0]["login"] = "nobody"
    with pytest.raises(Exception) as err:
        parse_config(raw, tmp_path)
    text = str(err.value)
    assert "public_url: required with oidc.providers" in text and "routes[0].login" in text


async def test_admin_api_lists_an_oidc_session_and_revokes_the_providers_user(oidc_gateway, aiohttp_client):
    key, digest = generate_admin_key()
    client = await oidc_gateway(cookies={"enabled": False},
                                admin={"host": "127.0.0.1", "port": 0, "keys": [{"name": "ops", "sha256": digest}]})
    admin = await aiohttp_client(create_admin_app(client.server.app[GATEWAY]))
    tokens = await code_session(client)
    listed = await (await admin.get("/admin/api/sessions?user=local:u-1", headers=bearer(key))).json()
    [session] = listed["sessions"]
    assert session["method"] == "oidc" and session["provider"] == "local" and session["client_ip"] == "127.0.0.1"
    nobody = await admin.post("/admin/api/sessions/revoke", json={"provider": "local", "user": "u-2"}, headers=bearer(key))
    assert (await nobody.json())["revoked"] == []
    unknown = await admin.post("/admin/api/sessions/revoke", json={"provider": "other", "user": "u-1"}, headers=bearer(key))
    assert unknown.status == 400
    resp = await admin.post("/admin/api/sessions/revoke", json={"provider": "local", "user": "u-1"}, headers=bearer(key))
    assert (await resp.json())["revoked"] == [session["session"]]
    refused = await client.get("/app/x", headers=bearer(tokens["access"]))
    assert refused.status == 401 and (await refused.json())["code"] == "token_revoked"


# -- how the provider signed the user in (trust_authentication) ---------------------------------

async def test_a_trusted_providers_login_claims_are_filtered_and_an_untrusted_ones_ignored(oidc_gateway, op):
    signed_in_at = int(time.time()) - 50
    op.claims_override = {"amr": ["pwd", "hwk", "<script>", 7], "acr": "gold", "auth_time": signed_in_at}
    trusted = await oidc_gateway({"trust_authentication": True}, cookies={"enabled": False})
    claims = jwt.decode((await code_session(trusted))["access"], options={"verify_signature": False})
    assert claims["amr"] == ["pwd", "hwk"] and claims["auth_time"] == signed_in_at and claims["idp"] == "local"
    assert "acr" not in claims  # gold is no level here
    untrusted = await oidc_gateway(cookies={"enabled": False})
    claims = jwt.decode((await code_session(untrusted))["access"], options={"verify_signature": False})
    assert "amr" not in claims and "acr" not in claims and claims["auth_time"] >= signed_in_at + 40


async def test_a_trusted_providers_auth_time_in_the_future_is_refused(oidc_gateway, op):
    op.claims_override = {"amr": ["pwd", "otp"], "auth_time": int(time.time()) + 3600}
    client = await oidc_gateway({"trust_authentication": True})
    resp = await sign_in(client)
    assert resp.status == 401 and "auth_time is in the future" in await resp.text()

