"""WebAuthn in cookie mode, in headless Chromium with the DevTools virtual authenticator against the real gateway
(started through its CLI): client.js in cookie mode enrols an authenticator after a password login; a navigation to
a route that wants `hwk` goes to the gateway's step-up page, which offers that authenticator, runs
navigator.credentials.get under its strict CSP and comes back to the route with hwk in amr; then the second step of
a password login and a passkey login, each answered with cookies only (no token in the page).

One tab (flow.mjs) keeps the authenticator across the pages. The gateway listens on 127.0.0.1 and is reached as
http://localhost (a secure context and a valid RP ID), as `public_url` says.
"""
from __future__ import annotations

import json
from typing import Any

import pytest
from aiohttp import web

from harness import run_flow_async
from stack import factor_gateway

SECRET = "webauthn-cookie-secret-" + "x" * 40
PASSWORD = "alice-long-password-1"

ENROL = r"""<!doctype html><meta charset=utf-8><title>enrol</title><link rel=icon href=data:,>
<script type=module>
try {
  const { createClient } = await import('/auth/client.js');
  const gw = createClient({ mode: 'cookie' });
  const login = await gw.login('alice', '__PASSWORD__');                 // no factor yet: the password alone
  const added = await gw.addAuthenticator('laptop');
  const asked = await gw.fetch('/keys/x', { headers: { Accept: 'application/json' } });
  window.__result = { tokenInPage: 'access' in login || 'refresh' in login, methods: added.methods,
                      codes: added.recovery_codes.length, asked: asked.status, url: (await asked.json()).step_up_url,
                      credentials: (await window.__cdp('WebAuthn.getCredentials')).credentials.length };
} catch (e) {
  window.__result = { error: String(e && e.stack || e) };
}
</script>
"""

LOGINS = r"""<!doctype html><meta charset=utf-8><title>logins</title><link rel=icon href=data:,>
<script type=module>
const me = async (gw) => { const r = await gw.fetch('/auth/me'); return r.ok ? (await r.json()).amr : r.status; };
try {
  const { createClient, SecondFactorRequired } = await import('/auth/client.js');
  const r = {};
  let gw = createClient({ mode: 'cookie' });
  await gw.logout();
  r.afterLogout = await me(gw);
  try { await gw.login('alice', '__PASSWORD__'); r.asked = null; } catch (e) {
    r.asked = { isSecondFactor: e instanceof SecondFactorRequired, methods: e.methods };
    const done = await gw.completeWithWebAuthn(e);
    r.second = { tokenInPage: 'access' in done || 'refresh' in done, csrf: typeof done.csrf_token === 'string', amr: await me(gw) };
  }
  await gw.logout();
  gw = createClient({ mode: 'cookie' });
  const passkey = await gw.loginWithPasskey();
  r.passkey = { tokenInPage: 'access' in passkey || 'refresh' in passkey, amr: await me(gw) };
  r.httpOnly = !document.cookie.includes('gw_access') && !document.cookie.includes('gw_refresh');
  window.__result = r;
} catch (e) {
  window.__result = { error: String(e && e.stack || e) };
}
</script>
"""


@pytest.fixture
async def stack(tmp_path, aiohttp_server, browser_env):
    async def page(request: web.Request) -> web.Response:
        html = {"enrol": ENROL, "logins": LOGINS}[request.match_info["name"]]
        return web.Response(text=html.replace("__PASSWORD__", PASSWORD), content_type="text/html",
                            headers={"Cache-Control": "no-store"})

    async def keys(request: web.Request) -> web.Response:  # the route behind the step-up: reports what it was told
        told = json.dumps({"amr": request.headers.get("X-User-Amr"), "path": request.path})
        return web.Response(text=f"<!doctype html><title>keys</title><script>window.__result = {told};</script>",
                            content_type="text/html")

    app = web.Application()
    app.router.add_get("/app/{name}.html", page)
    app.router.add_get("/keys/{tail:.*}", keys)
    page_server = await aiohttp_server(app, host="127.0.0.1")
    upstream = f"http://127.0.0.1:{page_server.port}"
    async with factor_gateway(
        tmp_path, SECRET, PASSWORD, cookies={"enabled": True},
        second_factor={"required": "step_up", "enrol_max_auth_age": "10m", "webauthn": {"passkey_login": True}},
        routes=[{"name": "app", "prefix": "/app", "upstream": upstream, "auth": "none"},
                {"name": "keys", "prefix": "/keys", "upstream": upstream, "require": {"amr_any": ["hwk"]},
                 "headers": {"X-User-Amr": "amr"}}],
    ) as (base, _log):
        yield base, tmp_path


async def test_cookie_mode_enrolment_step_up_page_second_step_and_passkey_login(stack: Any) -> None:
    base, tmp = stack
    steps: list[dict[str, Any]] = [
        {"goto": base + "/app/enrol.html"}, {"result": True},
        {"goto": base + "/keys/x"},  # a navigation: 302 to the step-up page
        {"waitFor": "#step-up-webauthn"}, {"url": True},
        {"evaluate": "[document.getElementById('step-up-webauthn').textContent, !!document.getElementById('step-up-form')]"},
        {"click": "#step-up-webauthn"}, {"waitForURL": "/keys/x$"}, {"result": True},
        {"goto": base + "/app/logins.html"}, {"result": True},
    ]
    out = await run_flow_async(steps, tmp, step_timeout=30, authenticator={})
    enrolled, page_url, offered, stepped, logins = out["results"]
    assert "error" not in enrolled and "error" not in logins, out
    assert enrolled == {"tokenInPage": False, "methods": ["webauthn", "recovery"], "codes": 10, "asked": 401,
                        "url": "/auth/mfa/step-up?next=/keys/x", "credentials": 1}
    assert page_url == base + "/auth/mfa/step-up?next=/keys/x"
    assert offered == ["Use your security key or passkey (laptop)", False]  # alice has no TOTP: no code field
    assert stepped == {"amr": "pwd,hwk,mfa", "path": "/keys/x"}
    assert logins["afterLogout"] == 401
    assert logins["asked"] == {"isSecondFactor": True, "methods": ["webauthn", "recovery"]}
    assert logins["second"] == {"tokenInPage": False, "csrf": True, "amr": ["pwd", "hwk", "mfa"]}
    assert logins["passkey"] == {"tokenInPage": False, "amr": ["hwk", "mfa"]} and logins["httpOnly"]
    assert not [line for line in out["console"] if "Content Security Policy" in line or line.startswith("pageerror")], out["console"]
