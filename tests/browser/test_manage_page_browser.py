"""The page to manage second factors in headless Chromium against the real gateway (started through its CLI), in
cookie mode, under its strict CSP, with the DevTools virtual authenticator:

a browser without a session is sent to the sign-in page; the password login of a user who must have a factor comes
within the enrolment grace period, so the sign-in page sends the browser to the manage page; TOTP is enrolled there
(the QR code drawn, the code computed with pyotp by this test's page server from the key the page shows); adding a
passkey then needs a login with that factor, so the page goes to the step-up page and comes back; the passkey is
added with a name, recovery codes are regenerated (shown once), removing the required user's TOTP stays refused,
the passkey is removed; signed out, the browser signs in again on the sign-in page with the password and a
recovery code and comes back to the page. No CSP violation is reported on the way.

The gateway listens on 127.0.0.1 but is reached as http://localhost (a valid WebAuthn RP ID), as `public_url` says.
"""
from __future__ import annotations

import sqlite3
import time

import pyotp
import pytest
from aiohttp import web

from harness import run_flow_async
from stack import factor_gateway

SECRET = "manage-browser-secret-" + "x" * 40
PASSWORD = "alice-long-password-1"

# Types the code for the key the page shows into the field (this test's page server computes it with pyotp).
TYPE_CODE = """(async () => {
  const key = document.getElementById('%s').textContent.trim();
  const code = await (await fetch('/app/totp?secret=' + encodeURIComponent(key))).text();
  document.getElementById('%s').value = code;
  return code.length;
})()"""
STEP_UP_CODE = """(async () => {
  const code = await (await fetch('/app/totp')).text();
  document.getElementById('code').value = code;
  return code.length;
})()"""
KEEP_A_CODE_AND_LOG_OUT = """(async () => {
  sessionStorage.setItem('kept', document.querySelector('#codes li').textContent);
  const csrf = document.cookie.split('; ').find((c) => c.startsWith('gw_csrf=')).slice('gw_csrf='.length);
  return (await fetch('/auth/logout', { method: 'POST', headers: { 'X-CSRF-Token': decodeURIComponent(csrf) } })).status;
})()"""
STATE = """({
  status: document.getElementById('manage-status').textContent,
  totp: document.getElementById('totp-state').textContent,
  begin: document.getElementById('totp-begin').textContent,
  keys: [...document.querySelectorAll('#authenticators li')].map((li) => [...li.querySelectorAll('span')].slice(0, 2).map((s) => s.textContent)),
  codesLeft: document.getElementById('codes-left').textContent,
  shownCodes: document.getElementById('codes-shown').hidden ? 0 : document.querySelectorAll('#codes li').length,
  continueTo: document.getElementById('continue')?.getAttribute('href') ?? null,
})"""


@pytest.fixture
async def stack(tmp_path, aiohttp_server, browser_env):
    secrets: list[str] = []

    async def totp(request: web.Request) -> web.Response:
        """The enrolment's code is the current step's; the step-up's is the next step's (accepted, one step either
        side): never a step an earlier code spent, wherever the 30 s boundary falls."""
        if "secret" in request.query:
            secrets.append(request.query["secret"])
            return web.Response(text=pyotp.TOTP(secrets[-1]).now())
        return web.Response(text=pyotp.TOTP(secrets[-1]).at(time.time() + 30))

    async def home(request: web.Request) -> web.Response:
        return web.Response(text="<!doctype html><title>home</title><p>home", content_type="text/html")

    app = web.Application()
    app.router.add_get("/app/totp", totp)
    app.router.add_get("/app/home", home)
    app.router.add_get("/private/home", home)
    page_server = await aiohttp_server(app, host="127.0.0.1")
    upstream = f"http://127.0.0.1:{page_server.port}"
    async with factor_gateway(
        tmp_path, SECRET, PASSWORD, cookies={"enabled": True, "secure": False},
        second_factor={"required": "everyone", "grace_period": "1d", "enrol_max_auth_age": "10m", "webauthn": {}},
        routes=[{"name": "app", "prefix": "/app", "upstream": upstream, "auth": "none"},
                {"name": "private", "prefix": "/private", "upstream": upstream, "login": "signin"}],
    ) as (base, _log):
        yield base, tmp_path


async def test_manage_factors_in_chromium(stack):
    base, tmp_path = stack
    loaded = {"waitFor": '#manage[data-loaded="true"]'}
    steps = [
        {"goto": f"{base}/auth/mfa/manage?next=/app/home"},  # no session yet
        {"waitForURL": r"/auth/signin\?next="}, {"url": True},
        {"fill": ["#username", "alice"]}, {"fill": ["#password", PASSWORD]}, {"click": "#password-form button"},
        {"waitForURL": r"/auth/mfa/manage\?next=/app/home$"}, loaded, {"evaluate": STATE},
        # TOTP: the QR code is drawn under img-src data:, the key shown, the first code confirms it
        {"click": "#totp-begin"}, {"waitFor": "#totp-enrol:not([hidden])"},
        {"evaluate": "document.getElementById('totp-qr').src.startsWith('data:image/svg+xml') "
                     "&& document.getElementById('totp-qr').naturalWidth > 0"},
        {"evaluate": TYPE_CODE % ("totp-secret", "totp-code")}, {"click": "#totp-confirm button"},
        {"waitFor": "#codes-shown:not([hidden])"}, {"waitFor": "#totp-remove:not([hidden])"}, {"evaluate": STATE},
        # a passkey: the session's login was made without the factor the user has now: step up, and back
        {"fill": ["#key-name", "laptop"]}, {"click": "#add-key button"},
        {"waitForURL": r"/auth/mfa/step-up\?next="}, {"url": True},
        {"evaluate": STEP_UP_CODE}, {"click": "#step-up-form button"},
        {"waitForURL": r"/auth/mfa/manage\?next=/app/home$"}, loaded,
        {"fill": ["#key-name", "laptop"]}, {"click": "#add-key button"},
        {"waitFor": "#authenticators li"}, {"evaluate": STATE},
        # the codes are on show already: wait for the button to come back (the answer is in)
        {"click": "#codes-new"}, {"waitFor": "#codes-new:not([disabled])"}, {"evaluate": STATE},
        {"click": "#totp-remove"}, {"waitFor": "#totp-remove:not([disabled])"}, {"evaluate": STATE},
        {"click": "#authenticators li button.remove"}, {"waitFor": "#authenticators:empty"}, {"evaluate": STATE},
        # signed out, back to the page: the sign-in page asks for the second factor (a recovery code shown above)
        {"evaluate": KEEP_A_CODE_AND_LOG_OUT},
        {"goto": f"{base}/auth/mfa/manage?next=/app/home"}, {"waitForURL": r"/auth/signin\?next="},
        {"fill": ["#username", "alice"]}, {"fill": ["#password", PASSWORD]}, {"click": "#password-form button"},
        {"waitFor": "#factor-step:not([hidden])"},
        {"evaluate": "document.getElementById('code').value = sessionStorage.getItem('kept')"},
        {"click": "#password-form button"},
        {"waitForURL": r"/auth/mfa/manage\?next=/app/home$"}, loaded, {"evaluate": STATE},
    ]
    out = await run_flow_async(steps, tmp_path, step_timeout=30.0, authenticator={})
    assert "error" not in out, out
    (signin, arrived, qr, typed, enrolled, step_up, typed_again, added, renewed, refused, removed, logged_out, _,
     again) = out["results"]
    assert signin.endswith("/auth/signin?next=/auth/mfa/manage%3Fnext%3D/app/home")
    assert arrived["totp"] == "No authenticator app is set up." and arrived["keys"] == []
    assert arrived["status"] == "Your account must have a second factor: set one up now."
    assert arrived["continueTo"] == "/app/home"
    assert qr is True and typed == 6
    assert arrived["begin"] == "Set up an authenticator app"
    assert enrolled["totp"] == "An authenticator app is set up." and enrolled["shownCodes"] == 10
    assert enrolled["begin"] == "Replace the authenticator app"  # a required user replaces, never removes
    assert enrolled["codesLeft"] == "Recovery codes left: 10."
    assert "/auth/mfa/step-up?next=/auth/mfa/manage" in step_up and typed_again == 6
    assert added["keys"] == [["laptop", "security key or device-bound passkey"]] and added["status"] == "laptop was added."
    assert renewed["shownCodes"] == 10 and renewed["status"].startswith("New recovery codes")
    assert refused["totp"] == "An authenticator app is set up." and "must have a second factor" in refused["status"]
    assert removed["keys"] == [] and removed["status"] == "laptop was removed."
    assert logged_out == 200
    assert again["codesLeft"] == "Recovery codes left: 9." and again["totp"] == "An authenticator app is set up."
    violations = [line for line in out["console"] if "Content Security Policy" in line or "pageerror" in line]
    assert violations == [], out["console"]
    with sqlite3.connect(tmp_path / "credentials.db") as db:  # what the page did is in the database
        kinds = sorted(k for (k,) in db.execute("SELECT DISTINCT kind FROM gw_credentials WHERE subject = 'alice'"))
        keys = db.execute("SELECT count(*) FROM gw_webauthn_credentials").fetchone()[0]
        grace = db.execute("SELECT ended_at FROM gw_enrolment_grace WHERE subject = 'alice'").fetchone()
    assert kinds == ["recovery", "totp"] and keys == 0 and grace == (None,)
