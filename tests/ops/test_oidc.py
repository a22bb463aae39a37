"""OIDC sign-in end to end: a real ``gateway run`` process and a certified OpenID Provider (oidc-provider
from npm, tests/support/oidc.py), walked with a plain HTTP client: both deliveries, refresh, rotation and
reuse detection, logout at the gateway and at the provider, back-channel logout, replays, a callback
carried to another provider, private_key_jwt, a provider that is down or slow, and a key rotation."""
from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any, AsyncIterator

import aiohttp
import pytest
from yarl import URL

from tests.conftest import SECRET
from tests.support.oidc import OidcClient, OidcProvider, OidcUser, client_session, end_session, rsa_key, sign_in
from tests.support.processes import GatewayProcesses, free_port

CLIENT_SECRET = "gateway-client-secret-0123456789abcdef"
ALICE = OidcUser("alice", "alice-pw", email="alice@corp.example", name="Alice", groups=("staff",))


class Setup:
    """One provider and one gateway process configured for it (public_url known before either starts)."""

    def __init__(self, tmp: Path, processes: GatewayProcesses, upstream: str, users_file: Path) -> None:
        self.tmp, self.processes, self.upstream, self.users_file = tmp, processes, upstream, users_file
        self.port = free_port()
        self.gw = f"http://127.0.0.1:{self.port}"
        self.key = rsa_key("gateway-client")
        (tmp / "op").mkdir(exist_ok=True)
        self.op = OidcProvider(tmp / "op", [self.client("gateway"), self.client("gateway-pkjwt", key=True)], [ALICE])

    def client(self, client_id: str, provider: str = "corp", key: bool = False) -> OidcClient:
        return OidcClient(
            client_id, [f"{self.gw}/auth/oidc/{provider}/callback"], client_secret=None if key else CLIENT_SECRET,
            key=self.key if key else None, post_logout_redirect_uris=[f"{self.gw}/bye"],
            backchannel_logout_uri=f"{self.gw}/auth/oidc/{provider}/backchannel-logout")

    def start_gateway(self, cookies: bool = True, more: dict[str, Any] | None = None, **provider: Any) -> None:
        spec = {"issuer": self.op.issuer, "client_id": "gateway", "client_secret": CLIENT_SECRET, "end_session": True,
                "claims": {"email": "email", "name": "name", "groups": "groups"}, "allow_unverified_email": True, **provider}
        raw = {
            "tokens": {"secret": SECRET, "issuer": "test-gw", "audience": "test-clients", "refresh_grace": "0s"},
            "users_file": str(self.users_file), "public_url": self.gw,
            "cookies": {"enabled": cookies, "secure": False, "same_site": "Lax"},
            "oidc": {"providers": {"corp": spec, **(more or {})}, "timeout": "1s", "post_logout_redirect_uris": [f"{self.gw}/bye"]},
            "routes": [{"name": "app", "prefix": "/app", "upstream": self.upstream, "login": "corp",
                        "headers": {"X-User-Id": "sub", "X-User-Email": "email", "X-User-Groups": "groups"}}],
        }
        self.processes(raw, port=self.port)

    async def sign_in(self, session: aiohttp.ClientSession, next_url: str = "/app/home", **params: str) -> aiohttp.ClientResponse:
        login = URL(f"{self.gw}/auth/oidc/corp/login").with_query({"next": next_url, **params})
        callback = await sign_in(session, str(login), "alice", "alice-pw")
        return await session.get(callback, allow_redirects=False)

    async def bearer_session(self, session: aiohttp.ClientSession) -> dict[str, Any]:
        resp = await self.sign_in(session, "/app/spa", deliver="code")
        assert resp.status == 302, await resp.text()
        code = URL(resp.headers["Location"]).fragment.removeprefix("gateway_code=")
        async with aiohttp.ClientSession() as spa:  # the SPA's fetch: no cookies
            answer = await spa.post(f"{self.gw}/auth/oidc/exchange", json={"code": code})
            assert answer.status == 200
            tokens: dict[str, Any] = await answer.json()
            again = await spa.post(f"{self.gw}/auth/oidc/exchange", json={"code": code})
            assert again.status == 400  # single use
        return tokens


@pytest.fixture
async def setup(tmp_path: Path, gateway_process: GatewayProcesses, upstream: str, users_file: Path) -> AsyncIterator[Setup]:
    s = Setup(tmp_path, gateway_process, upstream, users_file)
    await asyncio.to_thread(s.op.start)
    yield s
    await asyncio.to_thread(s.op.stop)


def cookie(session: aiohttp.ClientSession, name: str) -> str:
    return next(c.value for c in session.cookie_jar if c.key == name)


async def test_cookie_mode_sign_in_refresh_and_logout_at_gateway_and_provider(setup: Setup):
    setup.start_gateway()
    async with client_session() as browser:
        resp = await setup.sign_in(browser)
        assert resp.status == 302 and resp.headers["Location"] == "/app/home"
        home = await (await browser.get(f"{setup.gw}/app/home")).json()
        assert home["headers"]["X-User-Id"] == "corp:alice" and home["headers"]["X-User-Groups"] == "staff"
        refreshed = await browser.post(f"{setup.gw}/auth/token/refresh", headers={"X-CSRF-Token": cookie(browser, "gw_csrf")})
        assert refreshed.status == 200
        logout = await browser.get(f"{setup.gw}/auth/oidc/logout", params={"next": "/bye"}, allow_redirects=False)
        assert logout.status == 302
        end = URL(logout.headers["Location"])
        assert end.path.endswith("/session/end") and "id_token_hint" in end.query
        assert end.query["post_logout_redirect_uri"] == f"{setup.gw}/bye"
        back = await end_session(browser, str(end))
        assert str(back).startswith(f"{setup.gw}/bye")
        denied = await browser.get(f"{setup.gw}/app/home", headers={"Accept": "application/json"})
        assert denied.status == 401 and (await denied.json())["login_url"].startswith("/auth/oidc/corp/login")


async def test_code_delivery_refresh_rotation_and_reuse_detection(setup: Setup):
    setup.start_gateway(cookies=False)
    async with client_session() as browser, aiohttp.ClientSession() as spa:
        tokens = await setup.bearer_session(browser)
        auth = {"Authorization": f"Bearer {tokens['access']}"}
        assert (await (await spa.get(f"{setup.gw}/app/x", headers=auth)).json())["headers"]["X-User-Id"] == "corp:alice"
        rotated = await spa.post(f"{setup.gw}/auth/token/refresh", json={"refresh": tokens["refresh"]})
        assert rotated.status == 200
        new = await rotated.json()
        reuse = await spa.post(f"{setup.gw}/auth/token/refresh", json={"refresh": tokens["refresh"]})
        assert reuse.status == 401 and (await reuse.json())["code"] == "token_reused"
        assert (await spa.post(f"{setup.gw}/auth/token/refresh", json={"refresh": new["refresh"]})).status == 401


async def test_backchannel_logout_from_the_provider_revokes_the_session(setup: Setup):
    setup.start_gateway(cookies=False)
    async with client_session() as browser, aiohttp.ClientSession() as spa:
        tokens = await setup.bearer_session(browser)
        result = await setup.op.backchannel_logout("gateway", "alice")
        assert result.get("ok") is True, result
        resp = await spa.post(f"{setup.gw}/auth/token/refresh", json={"refresh": tokens["refresh"]})
        assert resp.status == 401
        # A session ended at the provider (its own logout page): the logout token names the sid.
        tokens = await setup.bearer_session(browser)
        async with browser.get(f"{setup.op.issuer}/.well-known/openid-configuration") as meta:
            end_session_endpoint = (await meta.json())["end_session_endpoint"]
        await end_session(browser, end_session_endpoint)
        assert (await spa.get(f"{setup.gw}/app/x", headers={"Authorization": f"Bearer {tokens['access']}"})).status == 401


async def test_replays_and_a_callback_carried_elsewhere(setup: Setup):
    setup.start_gateway()
    async with client_session() as browser:
        login = f"{setup.gw}/auth/oidc/corp/login?next=/app/home"
        callback = await sign_in(browser, login, "alice", "alice-pw")
        assert (await browser.get(callback, allow_redirects=False)).status == 302
        replay = await browser.get(callback, allow_redirects=False)  # state, nonce and code spent
        assert replay.status == 400 and "state_invalid" in await replay.text()
        forged = callback.update_query(state="x" * 43)
        assert (await browser.get(forged, allow_redirects=False)).status == 400
        second = await sign_in(browser, login, "alice", "alice-pw")
        async with client_session() as victim:  # the answer opened in another browser: no binding cookie
            resp = await victim.get(second, allow_redirects=False)
            assert resp.status == 400 and "another browser" in await resp.text()
        reused_code = (await sign_in(browser, login, "alice", "alice-pw")).update_query(code=callback.query["code"])
        resp = await browser.get(reused_code, allow_redirects=False)
        assert resp.status == 401 and "code_rejected" in await resp.text()


async def test_mix_up_an_answer_of_another_provider_is_refused(setup: Setup, tmp_path: Path):
    (tmp_path / "op2").mkdir()
    other = OidcProvider(tmp_path / "op2", [setup.client("gateway", provider="two")], [ALICE])
    await asyncio.to_thread(other.start)
    try:
        setup.start_gateway(more={"two": {"issuer": other.issuer, "client_id": "gateway", "client_secret": CLIENT_SECRET}})
        async with client_session() as browser:
            answer = await sign_in(browser, f"{setup.gw}/auth/oidc/two/login", "alice", "alice-pw")
            assert answer.query["iss"] == other.issuer
            carried = await browser.get(f"{setup.gw}/auth/oidc/corp/callback?{answer.query_string}", allow_redirects=False)
            assert carried.status == 400 and "another provider" in await carried.text()
            # corp's own state with the other provider's code and iss: the RFC 9207 check refuses it
            corp_login = await browser.get(f"{setup.gw}/auth/oidc/corp/login", allow_redirects=False)
            state = URL(corp_login.headers["Location"]).query["state"]
            answer = await sign_in(browser, f"{setup.gw}/auth/oidc/two/login", "alice", "alice-pw")
            mixed = answer.update_query(state=state).with_path("/auth/oidc/corp/callback", keep_query=True)
            resp = await browser.get(mixed, allow_redirects=False)
            assert resp.status == 400 and "issuer_mismatch" in await resp.text()
    finally:
        await asyncio.to_thread(other.stop)


async def test_private_key_jwt_client_authentication(setup: Setup, tmp_path: Path):
    key_file = setup.key.write(tmp_path / "client.pem")
    setup.start_gateway(client_id="gateway-pkjwt", client_secret=None, private_key_file=str(key_file),
                        private_key_id=setup.key.kid)
    async with client_session() as browser:
        assert (await setup.sign_in(browser)).status == 302
        assert (await browser.get(f"{setup.gw}/app/home")).status == 200


async def test_the_providers_key_rotation_mid_session(setup: Setup):
    setup.start_gateway()
    async with client_session() as browser:
        assert (await setup.sign_in(browser)).status == 302
        old_kid = setup.op.signing_kid
        await asyncio.to_thread(setup.op.rotate_keys)  # the old key is withdrawn
        assert setup.op.signing_kid != old_kid
        await asyncio.sleep(1.1)  # past the gateway's rate limit on kid re-fetches
        resp = await setup.sign_in(browser)
        assert resp.status == 302, await resp.text()
        # the gateway's own session outlives the provider's restart
        assert (await browser.get(f"{setup.gw}/app/home")).status == 200


async def test_a_provider_that_is_down_or_slow_is_a_clear_page_without_a_hang(setup: Setup):
    setup.start_gateway()
    async with client_session() as browser:
        callback = await sign_in(browser, f"{setup.gw}/auth/oidc/corp/login?next=/app/home", "alice", "alice-pw")
        await setup.op.set_delay(5, "/token")
        started = time.monotonic()
        resp = await browser.get(callback, allow_redirects=False)
        assert resp.status == 504 and "provider_timeout" in await resp.text()
        assert time.monotonic() - started < 4.5  # oidc.timeout (1s) decides, not the provider
        await setup.op.set_delay(0)
        await asyncio.to_thread(setup.op.stop)
        down = await browser.get(f"{setup.gw}/auth/oidc/corp/login", allow_redirects=False)
        # discovery is cached, so the login still redirects; the callback then cannot reach the token endpoint
        assert down.status == 302
        login = URL(down.headers["Location"])
        state = login.query["state"]
        resp = await browser.get(f"{setup.gw}/auth/oidc/corp/callback", params={"state": state, "code": "c", "iss": setup.op.issuer},
                                 allow_redirects=False)
        assert resp.status == 502 and "provider_unavailable" in await resp.text()


async def test_a_cold_gateway_with_the_provider_down(setup: Setup):
    await asyncio.to_thread(setup.op.stop)
    setup.start_gateway()
    async with aiohttp.ClientSession() as browser:
        resp = await browser.get(f"{setup.gw}/auth/oidc/corp/login", allow_redirects=False)
        assert resp.status == 502 and resp.content_type == "text/html"
        assert "Traceback" not in await resp.text()


async def test_no_code_token_or_state_in_the_gateways_log(setup: Setup):
    setup.start_gateway()
    async with client_session() as browser:
        callback = await sign_in(browser, f"{setup.gw}/auth/oidc/corp/login?next=/app/home", "alice", "alice-pw")
        await browser.get(callback, allow_redirects=False)
        access = cookie(browser, "gw_access")
    log = setup.processes.log(setup.port)
    for secret in (callback.query["code"], callback.query["state"], access, CLIENT_SECRET):
        assert secret not in log



# -- messages an operator can act on ----------------------------------------------------------------------

WRONG_SECRET = "not-the-registered-secret-0123456789"


async def test_a_wrong_client_secret_says_invalid_client_on_the_page_and_in_the_log(setup: Setup):
    setup.start_gateway(client_secret=WRONG_SECRET)
    async with client_session() as browser:
        callback = await sign_in(browser, f"{setup.gw}/auth/oidc/corp/login?next=/app/home", "alice", "alice-pw")
        resp = await browser.get(callback, allow_redirects=False)
        page = await resp.text()
    # the provider's own OAuth error (RFC 6749 §5.2) and description, and what to check
    assert resp.status == 502 and "provider_misconfigured" in page, page
    assert "invalid_client" in page and "client authentication failed" in page and "client_secret" in page
    log = setup.processes.log(setup.port)
    line = next(line for line in log.splitlines() if "invalid_client" in line)
    assert "corp" in line and "client authentication failed" in line
    for secret in (WRONG_SECRET, CLIENT_SECRET, callback.query["code"], callback.query["state"]):
        assert secret not in log and secret not in page


async def test_an_issuer_mismatch_names_both_issuers_and_a_misconfigured_provider(setup: Setup):
    configured = f"http://localhost:{setup.op.port}"  # the same provider's discovery, under another name
    setup.start_gateway(issuer=configured)
    async with aiohttp.ClientSession() as browser:
        resp = await browser.get(f"{setup.gw}/auth/oidc/corp/login", allow_redirects=False)
        page = await resp.text()
    assert resp.status == 502 and "provider_misconfigured" in page, page
    assert "misconfigured" in page.split("</h1>")[0] and "unavailable" not in page
    assert configured in page and setup.op.issuer in page
    line = next(line for line in setup.processes.log(setup.port).splitlines() if "issuer" in line and "corp" in line)
    assert configured in line and setup.op.issuer in line


async def test_mapped_claims_the_provider_does_not_release_are_logged_once_with_the_userinfo_hint(setup: Setup):
    # oidc-provider's default (conformIdTokenClaims): profile and email claims only at userinfo
    setup.op.conform_id_token_claims = True
    await asyncio.to_thread(setup.op.restart)
    setup.start_gateway(claims={"email": "email", "name": "name", "groups": "groups", "roles": "realm_access.roles"})
    async with client_session() as browser:
        for _ in range(2):
            assert (await setup.sign_in(browser)).status == 302
            home = await (await browser.get(f"{setup.gw}/app/home")).json()
            assert home["headers"]["X-User-Id"] == "corp:alice" and "X-User-Email" not in home["headers"]
    lines = [line for line in setup.processes.log(setup.port).splitlines() if "not released" in line]
    assert len(lines) == 1, lines  # once per provider, not per login
    for claim in ("email", "name", "groups", "roles", "corp", "userinfo: true"):
        assert claim in lines[0], lines[0]


async def test_an_hs256_id_token_is_refused_with_the_reason(setup: Setup):
    setup.op.clients.append(OidcClient("gateway-hs", [f"{setup.gw}/auth/oidc/corp/callback"], client_secret=CLIENT_SECRET,
                                       metadata={"id_token_signed_response_alg": "HS256"}))
    setup.op.id_token_signing_algs = ["RS256", "PS256", "ES256", "EdDSA", "HS256"]
    await asyncio.to_thread(setup.op.restart)
    setup.start_gateway(client_id="gateway-hs")
    async with client_session() as browser:
        resp = await setup.sign_in(browser)
        page = await resp.text()
    assert resp.status == 401 and "id_token_invalid" in page, page
    assert "HS256" in page and "asymmetric" in page and "JWKS" in page
    line = next(line for line in setup.processes.log(setup.port).splitlines() if "HS256" in line)
    assert "corp" in line and CLIENT_SECRET not in line
