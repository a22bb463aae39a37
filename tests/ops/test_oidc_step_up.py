"""Levels and step-up for sessions of an OIDC provider, end to end: a real ``gateway run`` process and the certified
oidc-provider (tests/support/oidc.py), whose login form says how the user signed in (``amr``, ``acr``, ``ts``).

Trusted provider: its amr (filtered), acr and auth_time reach the session; a step-up goes back to it with
``acr_values``/``max_age``/``prompt=login`` and comes back as a new access token of the same session; wrong user,
stale auth_time and a level not met are refused. Untrusted provider: the session's amr stays empty, its auth_time
is the gateway's sign-in, a level is never met through the provider, a recent login is."""
from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any, AsyncIterator

import aiohttp
import jwt
import pytest
from yarl import URL

from tests.conftest import SECRET
from tests.support.oidc import OidcClient, OidcProvider, OidcUser, client_session, sign_in
from tests.support.processes import GatewayProcesses, free_port

CLIENT_SECRET = "gateway-client-secret-0123456789abcdef"
ALICE = OidcUser("alice", "alice-pw", email="alice@corp.example", name="Alice")
BOB = OidcUser("bob", "bob-pw", email="bob@corp.example", name="Bob")
NAVIGATE = {"Sec-Fetch-Mode": "navigate", "Accept": "text/html"}
FETCH = {"Accept": "application/json", "X-Requested-With": "fetch"}


class Setup:
    def __init__(self, tmp: Path, processes: GatewayProcesses, upstream: str, users_file: Path) -> None:
        self.tmp, self.processes, self.upstream, self.users_file = tmp, processes, upstream, users_file
        self.port = free_port()
        self.gw = f"http://127.0.0.1:{self.port}"
        (tmp / "op").mkdir(exist_ok=True)
        client = OidcClient("gateway", [f"{self.gw}/auth/oidc/corp/callback"], client_secret=CLIENT_SECRET)
        self.op = OidcProvider(tmp / "op", [client], [ALICE, BOB], acr_values=["mfa", "phishing_resistant", "gold"])

    def start_gateway(self, trusted: bool, cookies: bool = True, factors: bool = False,
                      acr_values: dict[str, str] | None = None) -> None:
        spec = {"issuer": self.op.issuer, "client_id": "gateway", "client_secret": CLIENT_SECRET,
                "claims": {"email": "email", "name": "name"}, "trust_authentication": trusted,
                "acr_values": acr_values or {}}
        seen = {"X-User-Id": "sub", "X-User-Amr": "amr", "X-User-Acr": "acr", "X-User-Auth-Time": "auth_time"}
        raw = {
            "tokens": {"secret": SECRET, "issuer": "test-gw", "audience": "test-clients"},
            "users_file": str(self.users_file), "public_url": self.gw,
            "cookies": {"enabled": cookies, "secure": False, "same_site": "Lax"},
            "oidc": {"providers": {"corp": spec}, "timeout": "2s"},
            "decision": {"front": "nginx"},
            "routes": [
                {"name": "pay", "prefix": "/pay", "upstream": self.upstream, "login": "corp", "require": {"acr": "mfa"},
                 "headers": seen},
                {"name": "fresh", "prefix": "/fresh", "upstream": self.upstream, "login": "corp",
                 "require": {"max_auth_age": "8s"}, "headers": seen},
                {"name": "recent", "prefix": "/recent", "upstream": self.upstream, "login": "corp",
                 "require": {"max_auth_age": "60s"}, "headers": seen},
                {"name": "app", "prefix": "/app", "upstream": self.upstream, "login": "corp", "headers": seen},
            ],
        }
        if factors:  # second factors at the gateway too: its own step-up page
            raw["credentials"] = {"url": f"sqlite:///{self.tmp / 'credentials.db'}",
                                  "keys": [{"id": "k1", "secret": "credentials-sealing-key-0123456789-abcdef"}]}
            raw["second_factor"] = {}
        self.processes(raw, port=self.port)

    async def sign_in(self, browser: aiohttp.ClientSession, **said: str) -> None:
        login = URL(f"{self.gw}/auth/oidc/corp/login").with_query({"next": "/app/home"})
        resp = await browser.get(await sign_in(browser, str(login), "alice", "alice-pw", **said), allow_redirects=False)
        assert resp.status == 302, await resp.text()

    async def seen(self, browser: aiohttp.ClientSession, path: str) -> dict[str, str]:
        resp = await browser.get(f"{self.gw}{path}", headers=FETCH)
        assert resp.status == 200, await resp.text()
        headers: dict[str, str] = (await resp.json())["headers"]
        return headers

    async def step_up(self, browser: aiohttp.ClientSession, path: str, user: str = "alice", password: str = "alice-pw",
                      **said: str) -> tuple[URL, aiohttp.ClientResponse]:
        """A navigation refused for step-up, through the gateway to the provider and back: the authorization request
        and the gateway's answer at the callback."""
        refused = await browser.get(f"{self.gw}{path}", headers=NAVIGATE, allow_redirects=False)
        assert refused.status == 302, await refused.text()
        start = URL(self.gw).join(URL(refused.headers["Location"]))
        assert start.path == "/auth/oidc/step-up" and start.query["next"] == path
        to_provider = await browser.get(start, allow_redirects=False)
        assert to_provider.status == 302, await to_provider.text()
        authorize = URL(to_provider.headers["Location"])
        callback = await sign_in(browser, str(authorize), user, password, **said)
        return authorize, await browser.get(callback, allow_redirects=False)


def access_claims(browser: aiohttp.ClientSession) -> dict[str, Any]:
    token = next(c.value for c in browser.cookie_jar if c.key == "gw_access")
    return dict(jwt.decode(token, options={"verify_signature": False}))


def cookie(browser: aiohttp.ClientSession, name: str) -> str:
    return next(c.value for c in browser.cookie_jar if c.key == name)


@pytest.fixture
async def setup(tmp_path: Path, gateway_process: GatewayProcesses, upstream: str, users_file: Path) -> AsyncIterator[Setup]:
    s = Setup(tmp_path, gateway_process, upstream, users_file)
    await asyncio.to_thread(s.op.start)
    yield s
    await asyncio.to_thread(s.op.stop)


async def test_a_trusted_providers_amr_acr_and_auth_time_reach_the_session_and_survive_a_refresh(setup: Setup):
    setup.start_gateway(trusted=True)
    signed_in_at = int(time.time()) - 100
    async with client_session() as browser:
        await setup.sign_in(browser, amr="pwd,otp,made-up", acr="mfa", ts=str(signed_in_at))
        seen = await setup.seen(browser, "/pay/x")  # otp meets the level mfa
        assert seen["X-User-Amr"] == "pwd,otp" and seen["X-User-Acr"] == "mfa"  # made-up is no RFC 8176 value
        assert seen["X-User-Auth-Time"] == str(signed_in_at)
        refreshed = await browser.post(f"{setup.gw}/auth/token/refresh", headers={"X-CSRF-Token": cookie(browser, "gw_csrf")})
        assert refreshed.status == 200
        claims = access_claims(browser)
        assert claims["amr"] == ["pwd", "otp"] and claims["auth_time"] == signed_in_at and claims["idp"] == "corp"


async def test_trusted_step_up_goes_back_to_the_provider_and_renews_the_access_token_of_the_session(setup: Setup):
    setup.start_gateway(trusted=True)
    async with client_session() as browser:
        await setup.sign_in(browser, amr="pwd")
        family = access_claims(browser)["fid"]
        fetched = await browser.get(f"{setup.gw}/pay/x?a=1", headers=FETCH)
        body = await fetched.json()
        assert fetched.status == 401 and body["code"] == "insufficient_user_authentication"
        assert body["step_up_url"] == "/auth/oidc/step-up?next=/pay/x%3Fa%3D1&acr=mfa"
        assert 'acr_values="mfa"' in fetched.headers["WWW-Authenticate"]
        authorize, back = await setup.step_up(browser, "/pay/x", amr="pwd,hwk")
        assert authorize.query["acr_values"] == "mfa" and authorize.query["prompt"] == "login"
        assert "max_age" not in authorize.query
        assert back.status == 302 and back.headers["Location"] == "/pay/x"
        seen = await setup.seen(browser, "/pay/x")
        assert seen["X-User-Amr"] == "pwd,hwk" and access_claims(browser)["fid"] == family  # the same session
        assert int(seen["X-User-Auth-Time"]) >= int(time.time()) - 30
        # The refresh token is the sign-in's: a refresh is back to how the user signed in (docs/second-factor.md).
        refreshed = await browser.post(f"{setup.gw}/auth/token/refresh", headers={"X-CSRF-Token": cookie(browser, "gw_csrf")})
        assert refreshed.status == 200 and access_claims(browser)["amr"] == ["pwd"]


async def test_a_provider_acr_alone_meets_the_level_and_a_login_without_it_is_refused(setup: Setup):
    setup.start_gateway(trusted=True)
    async with client_session() as browser:
        await setup.sign_in(browser, amr="pwd")
        _, weak = await setup.step_up(browser, "/pay/x", amr="pwd")
        assert weak.status == 401 and "step_up_insufficient" in await weak.text()
        assert "did not confirm the level mfa" in await weak.text()
        assert (await browser.get(f"{setup.gw}/pay/x", headers=FETCH)).status == 401  # nothing renewed
        _, strong = await setup.step_up(browser, "/pay/x", acr="mfa")
        assert strong.status == 302
        claims = access_claims(browser)
        assert claims["acr"] == "mfa" and "amr" not in claims
        assert (await browser.get(f"{setup.gw}/pay/x", headers=FETCH)).status == 200


async def test_a_provider_that_names_the_level_otherwise_is_asked_and_believed_by_its_own_name(setup: Setup):
    setup.start_gateway(trusted=True, acr_values={"mfa": "gold"})  # e.g. Keycloak's level names
    async with client_session() as browser:
        await setup.sign_in(browser, amr="pwd", acr="mfa")  # not what this provider calls the level
        assert "acr" not in access_claims(browser)
        fetched = await browser.get(f"{setup.gw}/pay/x", headers=FETCH)
        assert fetched.status == 401 and 'acr_values="mfa"' in fetched.headers["WWW-Authenticate"]  # the gateway's name
        authorize, back = await setup.step_up(browser, "/pay/x", amr="pwd", acr="gold")
        assert authorize.query["acr_values"] == "gold"  # the provider is asked by its own name
        assert back.status == 302, await back.text()
        assert access_claims(browser)["acr"] == "mfa"  # and the session holds the gateway's
        assert (await browser.get(f"{setup.gw}/pay/x", headers=FETCH)).status == 200


async def test_a_step_up_as_another_user_is_refused(setup: Setup):
    setup.start_gateway(trusted=True)
    async with client_session() as browser:
        await setup.sign_in(browser, amr="pwd")
        _, back = await setup.step_up(browser, "/pay/x", user="bob", password="bob-pw", amr="pwd,otp")
        assert back.status == 403 and "step_up_wrong_user" in await back.text()
        assert access_claims(browser)["sub"] == "corp:alice"
        assert (await browser.get(f"{setup.gw}/pay/x", headers=FETCH)).status == 401


async def test_a_stale_auth_time_is_refused(setup: Setup):
    setup.start_gateway(trusted=True)
    async with client_session() as browser:
        await setup.sign_in(browser, amr="pwd")
        _, back = await setup.step_up(browser, "/pay/x", amr="pwd,otp", ts=str(int(time.time()) - 3600))
        assert back.status == 401 and "not sign you in again recently enough" in await back.text()
        assert (await browser.get(f"{setup.gw}/pay/x", headers=FETCH)).status == 401


async def test_max_auth_age_asks_the_provider_for_max_age(setup: Setup):
    setup.start_gateway(trusted=True)
    async with client_session() as browser:  # a trusted provider's auth_time: a sign-in 100 s old, no waiting here
        await setup.sign_in(browser, amr="pwd", ts=str(int(time.time()) - 100))
        fetched = await browser.get(f"{setup.gw}/recent/x", headers=FETCH)
        assert fetched.status == 401 and (await fetched.json())["step_up_url"] == "/auth/oidc/step-up?next=/recent/x&max_age=60"
        authorize, back = await setup.step_up(browser, "/recent/x", amr="pwd")
        assert authorize.query["max_age"] == "60" and "prompt" not in authorize.query  # max_age makes it sign in again
        assert back.status == 302
        assert (await browser.get(f"{setup.gw}/recent/x", headers=FETCH)).status == 200  # 60 s: margin for a loaded machine


async def test_an_untrusted_provider_gives_no_amr_and_steps_up_only_a_recent_login(setup: Setup):
    setup.start_gateway(trusted=False)
    async with client_session() as browser:
        before = int(time.time())
        await setup.sign_in(browser, amr="pwd,otp,hwk", acr="mfa", ts=str(before - 1000))
        claims = access_claims(browser)
        assert "amr" not in claims and "acr" not in claims and claims["auth_time"] >= before  # the gateway's sign-in
        pay = await browser.get(f"{setup.gw}/pay/x", headers=FETCH)
        assert pay.status == 401 and "step_up_url" not in await pay.json()  # nowhere a level can be met here
        navigation = await browser.get(f"{setup.gw}/pay/x", headers=NAVIGATE, allow_redirects=False)
        assert navigation.status == 401
        await asyncio.sleep(8.5)
        authorize, back = await setup.step_up(browser, "/fresh/x", amr="pwd,otp")
        assert authorize.query["prompt"] == "login" and authorize.query["max_age"] == "8"
        assert back.status == 302
        renewed = access_claims(browser)
        assert "amr" not in renewed and renewed["auth_time"] >= before + 8
        assert (await browser.get(f"{setup.gw}/fresh/x", headers=FETCH)).status == 200


async def test_an_untrusted_providers_session_meets_a_level_at_the_gateways_own_step_up_page(setup: Setup):
    setup.start_gateway(trusted=False, factors=True)
    async with client_session() as browser:
        await setup.sign_in(browser, amr="pwd,otp")
        pay = await browser.get(f"{setup.gw}/pay/x", headers=FETCH)
        assert pay.status == 401 and (await pay.json())["step_up_url"] == "/auth/mfa/step-up?next=/pay/x"
        navigation = await browser.get(f"{setup.gw}/pay/x", headers=NAVIGATE, allow_redirects=False)
        assert navigation.status == 302 and navigation.headers["Location"] == "/auth/mfa/step-up?next=/pay/x"
        await asyncio.sleep(8.5)  # a recent login still goes to the provider
        fresh = await browser.get(f"{setup.gw}/fresh/x", headers=FETCH)
        assert (await fresh.json())["step_up_url"] == "/auth/oidc/step-up?next=/fresh/x&max_age=8"


async def test_a_bearer_client_steps_up_through_the_one_time_code(setup: Setup):
    setup.start_gateway(trusted=True, cookies=False)
    async with client_session() as browser, client_session() as spa:
        login = URL(f"{setup.gw}/auth/oidc/corp/login").with_query({"next": "/app/spa", "deliver": "code"})
        done = await browser.get(await sign_in(browser, str(login), "alice", "alice-pw", amr="pwd"), allow_redirects=False)
        code = URL(done.headers["Location"]).fragment.removeprefix("gateway_code=")
        tokens = await (await spa.post(f"{setup.gw}/auth/oidc/exchange", json={"code": code})).json()
        auth = {"Authorization": f"Bearer {tokens['access']}"}
        refused = await spa.get(f"{setup.gw}/pay/x", headers=auth)
        step_up_url = (await refused.json())["step_up_url"]
        assert refused.status == 401 and step_up_url.startswith("/auth/oidc/step-up?")
        assert (await spa.post(f"{setup.gw}{step_up_url}")).status == 401  # a session is needed
        started = await spa.post(f"{setup.gw}{step_up_url}", headers=auth)
        assert started.status == 200, await started.text()
        authorization_url = (await started.json())["authorization_url"]
        browser.cookie_jar.update_cookies(started.cookies, started.url)  # the SPA's fetch and its navigation: one browser
        back = await browser.get(await sign_in(browser, authorization_url, "alice", "alice-pw", amr="pwd,otp"),
                                 allow_redirects=False)
        assert back.status == 302 and back.headers["Location"].startswith("/pay/x#gateway_code=")
        code = URL(back.headers["Location"]).fragment.removeprefix("gateway_code=")
        exchanged = await (await spa.post(f"{setup.gw}/auth/oidc/exchange", json={"code": code})).json()
        assert set(exchanged) == {"access", "token_type", "expires_in"}  # the session's refresh token stays
        stepped = jwt.decode(exchanged["access"], options={"verify_signature": False})
        assert stepped["fid"] == jwt.decode(tokens["access"], options={"verify_signature": False})["fid"]
        assert (await spa.get(f"{setup.gw}/pay/x", headers={"Authorization": f"Bearer {exchanged['access']}"})).status == 200


async def test_decision_mode_sends_a_navigation_to_the_providers_step_up(setup: Setup):
    setup.start_gateway(trusted=True)
    async with client_session() as browser:
        await setup.sign_in(browser, amr="pwd")
        asked = {"X-Original-Method": "GET", "X-Original-URI": "/pay/x", "Host": "app.example",
                 "Cookie": f"gw_access={cookie(browser, 'gw_access')}"}
        async with aiohttp.ClientSession() as front:
            navigation = await front.get(f"{setup.gw}/auth/decide", headers={**asked, **NAVIGATE}, allow_redirects=False)
            assert navigation.status == 302
            assert navigation.headers["Location"] == f"{setup.gw}/auth/oidc/step-up?next=/pay/x&acr=mfa"
            fetched = await front.get(f"{setup.gw}/auth/decide", headers={**asked, **FETCH})
            assert fetched.status == 401 and (await fetched.json())["step_up_url"] == "/auth/oidc/step-up?next=/pay/x&acr=mfa"
