"""Cookie mode: HttpOnly token cookies, the signed double-submit CSRF check, refresh and logout.

Cookies are handled by hand (``Set-Cookie`` parsed, ``Cookie`` sent explicitly) so every
attribute the gateway sets is visible to the assertions.
"""
from __future__ import annotations

from http.cookies import Morsel, SimpleCookie

import aiohttp
import pytest
from aiohttp import web
from multidict import CIMultiDict

from gateway.config import ConfigError
from tests.conftest import PASSWORDS, bearer

COOKIES = {"enabled": True}


def set_cookies(resp) -> dict[str, Morsel]:
    jar: SimpleCookie = SimpleCookie()
    for header in resp.headers.getall("Set-Cookie", []):
        jar.load(header)
    return dict(jar)


class Browser:
    """Just enough of a browser: keeps cookies by name, sends them, deletes them on Max-Age=0."""

    def __init__(self, client) -> None:
        self.client = client
        self.jar: dict[str, str] = {}

    def absorb(self, resp) -> None:
        for name, morsel in set_cookies(resp).items():
            if morsel["max-age"] == "0":
                self.jar.pop(name, None)
            else:
                self.jar[name] = morsel.value

    def cookie_header(self, extra: str = "") -> str:
        return "; ".join([*(f"{k}={v}" for k, v in self.jar.items()), *([extra] if extra else [])])

    async def request(self, method: str, path: str, *, csrf: bool = False, headers=None, **kw):
        headers = {"Cookie": self.cookie_header(), **(headers or {})}
        if csrf:
            headers["X-CSRF-Token"] = self.jar.get("gw_csrf", "")
        resp = await self.client.request(method, path, headers=headers, **kw)
        self.absorb(resp)
        return resp

    async def login(self, user: str = "alice", path: str = "/auth/token"):
        resp = await self.request("POST", path, json={"username": user, "password": PASSWORDS[user]})
        assert resp.status == 200, await resp.text()
        return resp


async def test_login_sets_httponly_cookies_and_keeps_tokens_out_of_the_body(make_gateway):
    gw = await make_gateway(cookies=COOKIES)
    resp = await Browser(gw).login()
    body = await resp.json()
    assert "access" not in body and "refresh" not in body
    cookies = set_cookies(resp)
    access, refresh, csrf = cookies["gw_access"], cookies["gw_refresh"], cookies["gw_csrf"]
    for morsel in (access, refresh, csrf):
        assert morsel["secure"] and morsel["samesite"] == "Strict" and int(morsel["max-age"]) == 14 * 86400
    assert access["httponly"] and access["path"] == "/"
    assert refresh["httponly"] and refresh["path"] == "/auth/token/refresh"  # sent to the refresh endpoint only
    assert not csrf["httponly"] and csrf["path"] == "/"  # readable by the page, for the header
    assert body["csrf_token"] == csrf.value and body["expires_in"] == 900


async def test_login_by_form_is_refused_in_cookie_mode(make_gateway):
    """Any site can post a form (login CSRF: the victim's browser logged into the attacker's account)."""
    gw = await make_gateway(cookies=COOKIES)
    resp = await gw.post("/auth/token", data={"username": "bob", "password": PASSWORDS["bob"]})
    assert resp.status == 415 and not resp.headers.getall("Set-Cookie", [])


async def test_cookie_authenticated_reads_and_csrf_checked_writes(make_gateway):
    gw = await make_gateway(cookies=COOKIES)
    browser = Browser(gw)
    await browser.login()
    resp = await browser.request("GET", "/api/x", headers={"Cookie": browser.cookie_header("theme=dark")})
    seen = CIMultiDict((await resp.json())["headers"])
    assert resp.status == 200 and seen["X-User-Id"] == "alice"
    assert seen["Cookie"] == "theme=dark"  # the gateway's cookies never reach an upstream

    resp = await browser.request("POST", "/api/x", data=b"x")
    assert resp.status == 403 and (await resp.json())["code"] == "csrf_failed"
    assert (await browser.request("DELETE", "/api/x", csrf=True)).status == 200
    resp = await browser.request("PUT", "/api/x", headers={"X-CSRF-Token": browser.jar["gw_csrf"] + "x"})
    assert resp.status == 403


async def test_csrf_token_of_another_session_is_refused(make_gateway):
    """Double submit is signed: a cookie/header pair planted from the attacker's own session fails."""
    gw = await make_gateway(cookies=COOKIES)
    victim, attacker = Browser(gw), Browser(gw)
    await victim.login("alice")
    await attacker.login("bob")
    planted = attacker.jar["gw_csrf"]
    headers = {"Cookie": f"gw_access={victim.jar['gw_access']}; gw_csrf={planted}", "X-CSRF-Token": planted}
    resp = await gw.post("/api/x", headers=headers)
    assert resp.status == 403 and (await resp.json())["code"] == "csrf_failed"


async def test_a_bearer_header_needs_no_csrf_token(make_gateway):
    gw = await make_gateway(cookies={**COOKIES, "access_cookie": False})
    browser = Browser(gw)
    resp = await browser.login()
    body = await resp.json()
    assert "gw_access" not in browser.jar and "access" in body and "refresh" not in body
    resp = await browser.request("POST", "/api/x", headers=bearer(body["access"]))
    assert resp.status == 200
    # without the access cookie enabled, a cookie named like it authenticates nothing
    resp = await gw.get("/api/x", headers={"Cookie": "gw_access=" + body["access"]})
    assert resp.status == 401


async def test_refresh_from_the_cookie(make_gateway):
    gw = await make_gateway(cookies=COOKIES)
    browser = Browser(gw)
    await browser.login()
    first = dict(browser.jar)
    resp = await browser.request("POST", "/auth/token/refresh")
    assert resp.status == 403 and (await resp.json())["code"] == "csrf_failed"
    assert browser.jar == first  # a refused refresh changes nothing
    resp = await browser.request("POST", "/auth/token/refresh", csrf=True)
    body = await resp.json()
    assert resp.status == 200 and set(body) == {"token_type", "expires_in", "csrf_token"}
    assert browser.jar["gw_access"] != first["gw_access"] and browser.jar["gw_refresh"] != first["gw_refresh"]
    assert (await browser.request("GET", "/api/x")).status == 200


async def test_dead_refresh_cookie_is_cleared(make_gateway):
    gw = await make_gateway(cookies=COOKIES, tokens={"refresh_grace": "0s"})
    browser = Browser(gw)
    await browser.login()
    stale = dict(browser.jar)
    assert (await browser.request("POST", "/auth/token/refresh", csrf=True)).status == 200
    headers = {"Cookie": f"gw_refresh={stale['gw_refresh']}; gw_csrf={stale['gw_csrf']}", "X-CSRF-Token": stale["gw_csrf"]}
    resp = await gw.post("/auth/token/refresh", headers=headers)
    assert resp.status == 401 and (await resp.json())["code"] == "token_reused"
    cleared = set_cookies(resp)
    assert {n for n, m in cleared.items() if m["max-age"] == "0"} == {"gw_access", "gw_refresh", "gw_csrf"}


async def test_logout_clears_cookies_and_ends_the_session(make_gateway):
    gw = await make_gateway(cookies=COOKIES)
    browser = Browser(gw)
    await browser.login()
    session = dict(browser.jar)
    resp = await browser.request("POST", "/auth/logout")
    assert resp.status == 403 and browser.jar == session  # a forged logout does nothing
    resp = await browser.request("POST", "/auth/logout", csrf=True)
    assert resp.status == 200 and browser.jar == {}
    cleared = set_cookies(resp)
    assert cleared["gw_refresh"]["path"] == "/auth/token/refresh" and cleared["gw_access"]["httponly"]
    # the old cookies are dead at the gateway, not only forgotten by the browser
    resp = await gw.get("/api/x", headers={"Cookie": f"gw_access={session['gw_access']}"})
    assert resp.status == 401 and (await resp.json())["code"] == "token_revoked"
    headers = {"Cookie": f"gw_refresh={session['gw_refresh']}; gw_csrf={session['gw_csrf']}", "X-CSRF-Token": session["gw_csrf"]}
    assert (await gw.post("/auth/token/refresh", headers=headers)).status == 401


async def test_me_reads_the_access_cookie(make_gateway):
    gw = await make_gateway(cookies=COOKIES)
    browser = Browser(gw)
    await browser.login("bob")
    resp = await browser.request("GET", "/auth/me")
    assert resp.status == 200 and (await resp.json())["sub"] == "bob"


async def test_cookie_settings(make_gateway):
    gw = await make_gateway(
        cookies={**COOKIES, "secure": False, "same_site": "Lax", "refresh_path": "/auth", "access_name": "app_at"},
        listen={"host": "127.0.0.1"},
    )
    cookies = set_cookies(await Browser(gw).login())
    assert set(cookies) == {"app_at", "gw_refresh", "gw_csrf"}
    assert cookies["gw_refresh"]["path"] == "/auth" and cookies["gw_csrf"]["samesite"] == "Lax"
    assert not any(m["secure"] for m in cookies.values())


async def test_profile_opts_into_cookie_mode(make_gateway):
    custom = {"profile": "custom", "paths": {"login": "/api/login", "refresh": "/api/refresh-token"}, "cookies": True}
    gw = await make_gateway(cookies=COOKIES, compat=[custom, {"profile": "simplejwt"}])
    browser = Browser(gw)
    assert set_cookies(await browser.login(path="/api/login"))["gw_refresh"]["path"] == "/api/refresh-token"
    resp = await browser.request("POST", "/api/refresh-token", csrf=True)
    assert resp.status == 200 and set(set_cookies(resp)) == {"gw_access", "gw_csrf"}  # no rotation: refresh cookie stays
    # a profile that did not opt in answers in its body, as its clients expect
    resp = await gw.post("/api/token/", json={"username": "bob", "password": PASSWORDS["bob"]})
    assert set(await resp.json()) == {"access", "refresh"} and not resp.headers.getall("Set-Cookie", [])


async def test_cookies_are_ignored_when_cookie_mode_is_off(gateway):
    login = await (await gateway.post("/auth/token", json={"username": "bob", "password": PASSWORDS["bob"]})).json()
    assert (await gateway.get("/api/x", headers={"Cookie": "gw_access=" + login["access"]})).status == 401


@pytest.mark.parametrize(
    "overrides,problem",
    [
        ({"cookies": {"enabled": True, "secure": False}, "listen": {"host": "0.0.0.0"}}, "cookies.secure: false is only for testing"),
        ({"cookies": {"enabled": True, "same_site": "None", "secure": False}}, "same_site: None needs secure: true"),
        ({"cookies": {"enabled": True, "csrf_name": "gw_access"}}, "must differ"),
        ({"cookies": {"refresh_name": "__Host-r", "refresh_path": "/auth"}}, "a __Host- cookie must have path /"),
        ({"compat": [{"profile": "simplejwt", "cookies": True}]}, "compat.profiles[0].cookies: needs cookies.enabled: true"),
        ({"cookies": {"domain": "example.com; Path=/x"}}, "cookies.domain: 'example.com; Path=/x' is not a domain name"),
    ],
)
def test_cookie_config_errors(make_config, overrides, problem):
    with pytest.raises(ConfigError) as info:
        make_config(**overrides)
    assert any(problem in p for p in info.value.problems), info.value.problems


async def test_mixed_deployment_bearer_dialect_next_to_cookie_mode(make_gateway):
    gw = await make_gateway(cookies=COOKIES, compat=[{"profile": "gateway", "prefix": "/bearer"}])
    resp = await gw.post("/bearer/auth/token/", json={"username": "bob", "password": PASSWORDS["bob"]})
    body = await resp.json()
    assert set(body) == {"access", "refresh", "token_type", "expires_in"} and not resp.headers.getall("Set-Cookie", [])
    resp = await gw.post("/bearer/auth/token/refresh", json={"refresh": body["refresh"]})
    assert resp.status == 200 and "refresh" in await resp.json()  # follows tokens.rotate_refresh
    assert set(set_cookies(await Browser(gw).login("bob"))) == {"gw_access", "gw_refresh", "gw_csrf"}



@pytest.fixture
async def ws_echo(aiohttp_server) -> str:
    """A websocket upstream that sends the handshake headers it received, then closes."""
    async def handle(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_json(dict(request.headers))
        await ws.close()
        return ws

    app = web.Application()
    app.router.add_get("/{tail:.*}", handle)
    server = await aiohttp_server(app)
    return str(server.make_url("")).rstrip("/")


async def test_websocket_handshake_by_cookie_from_the_own_origin_only(make_gateway, ws_echo):
    route = {"name": "ws", "prefix": "/ws", "upstream": ws_echo, "websocket": True, "headers": {"X-User-Id": "sub"}}
    gw = await make_gateway(cookies=COOKIES, routes=[route])
    browser = Browser(gw)
    await browser.login("bob")
    own = f"http://{gw.host}:{gw.port}"
    async with gw.ws_connect("/ws/feed", headers={"Cookie": browser.cookie_header("lang=en"), "Origin": own}) as ws:
        seen = CIMultiDict(await ws.receive_json(timeout=5))
    assert seen["X-User-Id"] == "bob" and seen["Cookie"] == "lang=en"  # token cookies stay at the gateway
    # another site's page: the browser would send the cookies along (cross-site websocket hijacking)
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await gw.ws_connect("/ws/feed", headers={"Cookie": browser.cookie_header(), "Origin": "https://evil.example"})
    assert refused.value.status == 403
