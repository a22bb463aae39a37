"""The built-in sign-in page completes every second-factor case of a login, in headless Chromium against the real
gateway (started through its CLI), in cookie mode, under its strict CSP, with the DevTools virtual authenticator:

- a required user with no factor and no grace period enrols a passkey right on the page (its recovery codes shown
  once) and lands on `next`; signed out, the same user, whose only factor is now that key, signs in with it (the
  page offers the key beside the recovery-code field); then with "Sign in with a passkey" (no password);
- another required user enrols TOTP on the page (the QR code drawn, the code computed with pyotp by this test's page
  server from the key the page shows) and lands on `next`; a key added on the manage page makes a TOTP+WebAuthn
  user, who then signs in once with a code and once with the key, choosing on the page.

Every landing reports the `amr` the route was told; no CSP violation, no token readable by the page.
The gateway listens on 127.0.0.1 but is reached as http://localhost (a valid WebAuthn RP ID), as `public_url` says.
"""
from __future__ import annotations

import sqlite3
import time
from typing import Any

import pyotp
import pytest
from aiohttp import web

from harness import run_flow_async
from stack import RunningGateway, factor_gateway

SECRET = "signin-factors-secret-" + "x" * 40
PASSWORD = "alice-long-password-1"

SIGN_IN = [{"fill": ["#username", "alice"]}, {"fill": ["#password", PASSWORD]}, {"click": "#sign-in"}]
LANDED = {"evaluate": "document.getElementById('amr').textContent"}
LOG_OUT = {"evaluate": """(async () => {
  const csrf = document.cookie.split('; ').find((c) => c.startsWith('gw_csrf=')).slice('gw_csrf='.length);
  return (await fetch('/auth/logout', { method: 'POST', headers: { 'X-CSRF-Token': decodeURIComponent(csrf) } })).status;
})()"""}
# what the page shows once the password is proven (hidden or not)
OFFERED = {"evaluate": """({
  code: !document.getElementById('factor-step').hidden, key: !(document.getElementById('webauthn-step')?.hidden ?? true),
  enrol: !document.getElementById('enrol-step').hidden, status: document.getElementById('password-status').textContent,
})"""}
STATUS = {"evaluate": "document.getElementById('password-status').textContent"}
TAKE_KEY_AWAY = """(async () => {
  const { credentials } = await window.__cdp('WebAuthn.getCredentials');
  window.kept = credentials;
  for (const c of credentials) await window.__cdp('WebAuthn.removeCredential', { credentialId: c.credentialId });
  return credentials.length;
})()"""
BRING_KEY_BACK = """(async () => {
  for (const credential of window.kept) await window.__cdp('WebAuthn.addCredential', { credential });
  return (await window.__cdp('WebAuthn.getCredentials')).credentials.length;
})()"""
SHOWN_CODES = {"evaluate": "document.querySelectorAll('#recovery-codes li').length"}
NO_TOKEN_IN_PAGE = {"evaluate": "!document.cookie.includes('gw_access') && !document.cookie.includes('gw_refresh') "
                                "&& localStorage.length === 0 && sessionStorage.length === 0"}
# Types the code into the field: for the key the page shows (enrolment, the current step), or the next step's code
# of that key (a later login: never a step an earlier code spent, wherever the 30 s boundary falls).
TYPE_CODE = """(async () => {
  const key = document.getElementById('enrol-secret')?.textContent.trim() || '';
  const code = await (await fetch('/app/totp?secret=' + encodeURIComponent(key))).text();
  document.getElementById('%s').value = code;
  return code.length;
})()"""


@pytest.fixture
async def site(aiohttp_server: Any, browser_env: Any) -> str:
    secrets: list[str] = []

    async def totp(request: web.Request) -> web.Response:
        if request.query.get("secret"):
            secrets.append(request.query["secret"])
            return web.Response(text=pyotp.TOTP(secrets[-1]).now())
        return web.Response(text=pyotp.TOTP(secrets[-1]).at(time.time() + 30))

    async def home_text(request: web.Request) -> web.Response:
        return web.Response(text=f"<!doctype html><title>home</title><p id=amr>{request.headers.get('X-User-Amr')}</p>",
                            content_type="text/html")

    app = web.Application()
    app.router.add_get("/app/totp", totp)
    app.router.add_get("/private/home", home_text)
    server = await aiohttp_server(app, host="127.0.0.1")
    return f"http://127.0.0.1:{server.port}"


def config(upstream: str, webauthn: dict[str, Any]) -> dict[str, Any]:
    return {
        "cookies": {"enabled": True, "secure": False},
        "second_factor": {"required": "everyone", "enrol_max_auth_age": "10m", "webauthn": webauthn},  # no grace
        "routes": [{"name": "app", "prefix": "/app", "upstream": upstream, "auth": "none"},
                   {"name": "private", "prefix": "/private", "upstream": upstream, "login": "signin",
                    "headers": {"X-User-Amr": "amr"}}],
    }


def no_csp_violation(out: dict[str, Any]) -> None:
    bad = [line for line in out["console"] if "Content Security Policy" in line or line.startswith("pageerror")]
    assert bad == [], out["console"]


async def test_enrol_a_passkey_at_sign_in_then_sign_in_with_it(site: str, tmp_path: Any) -> None:
    async with factor_gateway(tmp_path, SECRET, PASSWORD, **config(site, {"passkey_login": True})) as (base, log):
        start = {"goto": f"{base}/private/home"}  # no session: the route sends the navigation to the sign-in page
        steps: list[dict[str, Any]] = [
            start, {"waitForURL": r"/auth/signin\?next=/private/home$"}, {"waitFor": "#password-form[data-ready]"},
            *SIGN_IN, {"waitFor": "#enrol-step:not([hidden])"}, OFFERED,
            {"fill": ["#enrol-key-name", "laptop"]}, {"click": "#enrol-key-form button"},
            {"waitFor": "#enrol-done:not([hidden])"}, SHOWN_CODES, NO_TOKEN_IN_PAGE,
            {"click": "#continue"}, {"waitForURL": r"/private/home$"}, {"waitFor": "#amr"}, LANDED, LOG_OUT,
            # the key is the user's only factor now (beside the recovery codes)
            start, {"waitForURL": r"/auth/signin\?"}, {"waitFor": "#password-form[data-ready]"},
            *SIGN_IN, {"waitFor": "#webauthn-step:not([hidden])"}, OFFERED,
            # a ceremony that fails (the key is away), then again: a new challenge for the same mfa_token
            {"evaluate": TAKE_KEY_AWAY}, {"click": "#use-key"}, {"waitFor": "#use-key:not([disabled])"}, STATUS,
            {"evaluate": BRING_KEY_BACK},
            {"click": "#use-key"}, {"waitForURL": r"/private/home$"}, {"waitFor": "#amr"}, LANDED, NO_TOKEN_IN_PAGE,
            LOG_OUT,
            # a passkey login: no user name, no password
            start, {"waitForURL": r"/auth/signin\?"}, {"waitFor": "#password-form[data-ready]"},
            {"click": "#passkey-login"}, {"waitForURL": r"/private/home$"}, {"waitFor": "#amr"}, LANDED,
        ]
        out = await run_flow_async(steps, tmp_path, step_timeout=30.0, authenticator={})
        calls = RunningGateway(base, log).access_log()
    assert "error" not in out, out
    # the retry after the failed ceremony asked the gateway for a new challenge for the same mfa_token
    assert [e["status"] for e in calls if e["path"] == "/auth/mfa/webauthn/login-options"] == [200]
    (enrol, codes, clean, enrolled_amr, out1, offered, taken, failed, back, key_amr, clean2, out2,
     passkey_amr) = out["results"]
    assert taken == back == 1 and failed == "The key was not used (cancelled or not allowed). Try again."
    assert enrol == {"code": False, "key": False, "enrol": True,
                     "status": "Your account needs a second factor. Set one up now to finish signing in."}
    assert codes == 10 and clean is True and clean2 is True and out1 == out2 == 200
    assert enrolled_amr == key_amr == "pwd,hwk,mfa"  # the new key is the login's second factor
    assert offered["key"] and offered["code"] and not offered["enrol"]  # a key, and a field for a recovery code
    assert passkey_amr == "hwk,mfa"
    no_csp_violation(out)
    with sqlite3.connect(tmp_path / "credentials.db") as db:
        assert db.execute("SELECT name FROM gw_webauthn_credentials").fetchall() == [("laptop",)]


async def test_enrol_totp_at_sign_in_then_choose_code_or_key(site: str, tmp_path: Any) -> None:
    async with factor_gateway(tmp_path, SECRET, PASSWORD, **config(site, {})) as (base, _log):
        start = {"goto": f"{base}/auth/signin?next=/private/home"}
        steps: list[dict[str, Any]] = [
            start, {"waitFor": "#password-form[data-ready]"}, *SIGN_IN, {"waitFor": "#enrol-step:not([hidden])"},
            {"click": "#enrol-totp-begin"}, {"waitFor": "#enrol-totp:not([hidden])"},
            {"evaluate": "document.getElementById('enrol-qr').src.startsWith('data:image/svg+xml') "
                         "&& document.getElementById('enrol-qr').naturalWidth > 0"},
            {"fill": ["#enrol-code", "000000"]}, {"click": "#enrol-totp-form button"},  # a wrong first code
            {"waitFor": "#enrol-totp-form button:not([disabled])"},
            {"evaluate": "document.getElementById('password-status').textContent"},
            {"evaluate": TYPE_CODE % "enrol-code"}, {"click": "#enrol-totp-form button"},
            {"waitFor": "#enrol-done:not([hidden])"}, SHOWN_CODES,
            {"click": "#continue"}, {"waitForURL": r"/private/home$"}, {"waitFor": "#amr"}, LANDED,
            # a key too, on the manage page (the login just made with TOTP is fresh)
            {"goto": f"{base}/auth/mfa/manage"}, {"waitFor": '#manage[data-loaded="true"]'},
            {"fill": ["#key-name", "laptop"]}, {"click": "#add-key button"}, {"waitFor": "#authenticators li"}, LOG_OUT,
            # TOTP + key: the page offers both; a code first
            start, {"waitFor": "#password-form[data-ready]"}, *SIGN_IN, {"waitFor": "#factor-step:not([hidden])"},
            OFFERED, {"evaluate": TYPE_CODE % "code"}, {"click": "#sign-in"},
            {"waitForURL": r"/private/home$"}, {"waitFor": "#amr"}, LANDED, LOG_OUT,
            # then the key
            start, {"waitFor": "#password-form[data-ready]"}, *SIGN_IN, {"waitFor": "#webauthn-step:not([hidden])"},
            {"click": "#use-key"}, {"waitForURL": r"/private/home$"}, {"waitFor": "#amr"}, LANDED, NO_TOKEN_IN_PAGE,
        ]
        out = await run_flow_async(steps, tmp_path, step_timeout=30.0, authenticator={})
    assert "error" not in out, out
    qr, wrong, typed, codes, enrolled_amr, out1, offered, typed2, code_amr, out2, key_amr, clean = out["results"]
    assert qr is True and wrong == "The code is not right." and typed == typed2 == 6 and codes == 10
    assert enrolled_amr == code_amr == "pwd,otp,mfa"
    assert offered["code"] and offered["key"] and not offered["enrol"] and out1 == out2 == 200
    assert "security key or passkey, or enter the code" in offered["status"]
    assert key_amr == "pwd,hwk,mfa" and clean is True
    no_csp_violation(out)
    with sqlite3.connect(tmp_path / "credentials.db") as db:
        kinds = sorted(k for (k,) in db.execute("SELECT DISTINCT kind FROM gw_credentials WHERE subject = 'alice'"))
    assert kinds == ["recovery", "totp"]
