"""client.js and the second factor, in headless Chromium against the real gateway (started through its CLI):
a login that answers second_factor_required finished with completeSecondFactor() and a TOTP code, a step-up
route reached with it, and a password-only session's step-up refusal handed to onStepUp without a refresh.

The page asks this test's page server for the current TOTP code (pyotp, from the secret this test enrolled
through the gateway's own endpoints), so no authenticator logic lives in the page.
"""
from __future__ import annotations

import json
import time

import aiohttp
import pyotp
import pytest
from aiohttp import web

from harness import free_port, run_page_async
from stack import run_gateway
from tests.support.processes import example_upstream
from tests.support.totp import clear_of_step_boundary

SECRET = "mfa-browser-secret-" + "x" * 40
PASSWORDS = {"alice": "alice-long-password-1", "bob": "bob-long-password-2"}

PAGE = r"""<!doctype html><meta charset=utf-8><title>mfa</title><link rel=icon href=data:,>
<script type=module>
try {
  const { createClient, AuthError, SecondFactorRequired } = await import('/auth/client.js');
  const stepUps = [];
  const gw = createClient({ baseURL: location.origin, onStepUp: (e) => stepUps.push({ acr: e.acrValues, maxAge: e.maxAge, status: e.response.status }) });
  let asked = null, mfaToken = null;
  try { await gw.login('alice', '__ALICE__'); } catch (e) {
    asked = { name: e.name, isAuthError: e instanceof AuthError, isSecondFactor: e instanceof SecondFactorRequired,
              methods: e.methods, status: e.status, hasToken: typeof e.mfaToken === 'string' && e.mfaToken.length > 10 };
    mfaToken = e.mfaToken;
  }
  const code = await (await fetch('/app/totp')).text();
  const done = await gw.completeSecondFactor(mfaToken, { code });
  const stepped = await gw.fetch('/api/stepup/x');
  const bob = createClient({ baseURL: location.origin, onStepUp: (e) => stepUps.push({ acr: e.acrValues, maxAge: e.maxAge, status: e.response.status }) });
  await bob.login('bob', '__BOB__');
  const plain = await bob.fetch('/api/plain/x');
  const refused = await bob.fetch('/api/stepup/x');
  window.__result = { asked, hasAccess: typeof done.access === 'string', steppedStatus: stepped.status,
                      plainStatus: plain.status, refusedStatus: refused.status, refusedCode: (await refused.json()).code,
                      bobStillLoggedIn: bob.accessToken !== null, stepUps };
} catch (e) {
  window.__result = { error: String(e && e.stack || e) };
}
</script>
"""


@pytest.fixture
async def stack(tmp_path, aiohttp_server, browser_env):
    from gateway.sources.users import hash_password

    otp: dict[str, pyotp.TOTP] = {}

    async def page(request: web.Request) -> web.Response:
        html = PAGE.replace("__ALICE__", PASSWORDS["alice"]).replace("__BOB__", PASSWORDS["bob"])
        return web.Response(text=html, content_type="text/html", headers={"Cache-Control": "no-store"})

    async def totp(request: web.Request) -> web.Response:
        return web.Response(text=otp["alice"].now())

    app = web.Application()
    app.router.add_get("/app/index.html", page)
    app.router.add_get("/app/totp", totp)
    page_server = await aiohttp_server(app, host="127.0.0.1")
    up_port, gw_port = free_port(), free_port()
    users = {name: {"password_hash": hash_password(pw), "claims": {"roles": ["user"]}} for name, pw in PASSWORDS.items()}
    (tmp_path / "users.yaml").write_text(json.dumps({"users": users}))
    (tmp_path / "gateway.yaml").write_text(json.dumps({
        "listen": {"host": "127.0.0.1", "port": gw_port},
        "tokens": {"secret": SECRET, "issuer": "gateway", "audience": "gateway-clients", "leeway": "0s"},
        "users_file": "users.yaml",
        "credentials": {"url": f"sqlite:///{tmp_path / 'credentials.db'}", "keys": [{"id": "k1", "secret": "k" * 40}]},
        "second_factor": {"required": "step_up"},
        "routes": [
            {"name": "app", "prefix": "/app", "upstream": f"http://127.0.0.1:{page_server.port}", "auth": "none"},
            {"name": "stepup", "prefix": "/api/stepup", "upstream": f"http://127.0.0.1:{up_port}",
             "require": {"amr_any": ["otp"]}},
            {"name": "plain", "prefix": "/api/plain", "upstream": f"http://127.0.0.1:{up_port}"},
        ],
    }))
    upstream = example_upstream(tmp_path, port=up_port, env={"PYTHONUNBUFFERED": "1"}).start()
    try:
        async with run_gateway(tmp_path / "gateway.yaml", gw_port, tmp_path / "gateway.log") as gateway:
            async with aiohttp.ClientSession() as s:  # alice enrols TOTP through the gateway's own endpoints
                async with s.post(gateway.url + "/auth/token", json={"username": "alice", "password": PASSWORDS["alice"]}) as r:
                    access = (await r.json())["access"]
                auth = {"Authorization": f"Bearer {access}"}
                async with s.post(gateway.url + "/auth/mfa/totp", headers=auth) as r:
                    assert r.status == 200, await r.text()
                    otp["alice"] = pyotp.TOTP((await r.json())["secret"])
                await clear_of_step_boundary()
                async with s.post(gateway.url + "/auth/mfa/totp/confirm", headers=auth,
                                  json={"code": otp["alice"].at(time.time() - 30)}) as r:  # the page uses the current step
                    assert r.status == 200, await r.text()
            yield gateway
    finally:
        upstream.stop()


async def test_second_factor_login_and_step_up_in_client_js(stack):
    base = stack.url
    r = await run_page_async(base + "/app/index.html", timeout=60)
    assert isinstance(r, dict) and "error" not in r, r
    assert r["asked"] == {"name": "SecondFactorRequired", "isAuthError": True, "isSecondFactor": True,
                          "methods": ["totp", "recovery"], "status": 401, "hasToken": True}
    assert r["hasAccess"] and r["steppedStatus"] == 200  # the code's login meets amr_any: [otp]
    assert r["plainStatus"] == 200 and r["refusedStatus"] == 401 and r["refusedCode"] == "insufficient_user_authentication"
    assert r["bobStillLoggedIn"] and r["stepUps"] == [{"acr": "otp", "maxAge": None, "status": 401}]
    refreshes = [e for e in stack.access_log() if e["path"].startswith("/auth/token/refresh")]
    assert refreshes == []  # the step-up refusal was never "refreshed"
