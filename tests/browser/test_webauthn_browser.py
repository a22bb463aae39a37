"""WebAuthn in headless Chromium with the DevTools virtual authenticator (ctap2, internal transport, resident keys,
user verification) against the real gateway (started through its CLI), in bearer mode through client.js:
enrolment after a fresh login, a step-up of that session with the new key (stepUp({ webauthn: true })), the
second step of a password login, a passkey login, and the hostile cases a
browser can show (an assertion for another login's challenge, a cloned authenticator by its sign count, an
authenticator that stops verifying the user).

The gateway listens on 127.0.0.1 but is reached as http://localhost (a secure context and a valid RP ID; an IP
address is none), as `public_url` says.
"""
from __future__ import annotations

import pytest
from aiohttp import web

from harness import run_page_async
from stack import factor_gateway

SECRET = "webauthn-browser-secret-" + "x" * 40
PASSWORD = "alice-long-password-1"

PAGE = r"""<!doctype html><meta charset=utf-8><title>webauthn</title><link rel=icon href=data:,>
<script type=module>
const claims = (jwt) => JSON.parse(atob(jwt.split('.')[1].replace(/-/g, '+').replace(/_/g, '/')));
const outcome = async (work) => { try { const r = await work(); return { ok: true, amr: claims(r.access).amr }; }
                                  catch (e) { return { ok: false, name: e.name, status: e.status ?? null, code: e.body?.code ?? null }; } };
try {
  const { createClient, SecondFactorRequired, requestOptions, credentialToJSON } = await import('/auth/client.js');
  const fresh = () => createClient({ baseURL: location.origin });
  const pending = async () => { try { await fresh().login('alice', '__PASSWORD__'); return null; } catch (e) { return e; } };
  const r = {};
  const gw = fresh();
  await gw.login('alice', '__PASSWORD__');                                   // no factor yet: the password alone
  const added = await gw.addAuthenticator('laptop');
  r.enrolled = { methods: added.methods, codes: added.recovery_codes.length };
  r.credentials = (await window.__cdp('WebAuthn.getCredentials')).credentials.length;

  // step-up in this password-only session: the route wants hwk; stepUp({ webauthn: true }) re-verifies with the key
  const asked = await gw.fetch('/keys/x');
  r.stepUpAsked = { status: asked.status, url: (await asked.json()).step_up_url };
  const stepped = await gw.stepUp({ webauthn: true });
  const after = await gw.fetch('/keys/x');
  r.steppedUp = { amr: stepped.amr, stored: claims(gw.accessToken).amr, status: after.status, upstream: (await after.json()).amr };

  let err = await pending();
  r.asked = { isSecondFactor: err instanceof SecondFactorRequired, methods: err.methods, rpId: err.webauthn.rpId };
  const second = fresh();
  r.second = await outcome(() => second.completeWithWebAuthn(err));

  r.passkey = await outcome(() => fresh().loginWithPasskey());

  // another login's challenge: the first login's options answered for the second login's mfa_token
  const one = await pending(), two = await pending();
  r.crossed = await outcome(() => fresh().completeWithWebAuthn({ mfaToken: two.mfaToken, webauthn: one.webauthn }));

  // a clone: the credential copied now (sign count n), used once (n+1 stored), then the copy answers with n+1 again
  const [copy] = (await window.__cdp('WebAuthn.getCredentials')).credentials;
  r.beforeClone = await outcome(async () => fresh().completeWithWebAuthn(await pending()));
  await window.__cdp('WebAuthn.removeCredential', { credentialId: copy.credentialId });
  await window.__cdp('WebAuthn.addCredential', { credential: copy });
  r.clone = await outcome(async () => fresh().completeWithWebAuthn(await pending()));

  // an authenticator that no longer verifies its user (user_verification: required)
  await window.__cdp('WebAuthn.setUserVerified', { isUserVerified: false });
  r.unverified = await outcome(async () => fresh().completeWithWebAuthn(await pending()));
  r.unverifiedPasskey = await outcome(() => fresh().loginWithPasskey());
  // a downgrade: the page asks the authenticator not to verify (userVerification: discouraged) and sends its answer
  const downgraded = await pending();
  const cred = await navigator.credentials.get({ publicKey: requestOptions({ ...downgraded.webauthn, userVerification: 'discouraged' }) });
  const sent = await fetch('/auth/token', { method: 'POST', headers: { 'Content-Type': 'application/json' },
                                            body: JSON.stringify({ mfa_token: downgraded.mfaToken, webauthn: credentialToJSON(cred) }) });
  r.downgrade = { status: sent.status, code: (await sent.json()).code };
  window.__result = r;
} catch (e) {
  window.__result = { error: String(e && e.stack || e) };
}
</script>
"""


@pytest.fixture
async def stack(tmp_path, aiohttp_server, browser_env):
    async def page(request: web.Request) -> web.Response:
        return web.Response(text=PAGE.replace("__PASSWORD__", PASSWORD), content_type="text/html",
                            headers={"Cache-Control": "no-store"})

    async def keys(request: web.Request) -> web.Response:
        return web.json_response({"amr": request.headers.get("X-User-Amr")})

    app = web.Application()
    app.router.add_get("/app/index.html", page)
    app.router.add_get("/keys/{tail:.*}", keys)
    page_server = await aiohttp_server(app, host="127.0.0.1")
    upstream = f"http://127.0.0.1:{page_server.port}"
    async with factor_gateway(
        tmp_path, SECRET, PASSWORD,
        second_factor={"required": "step_up", "enrol_max_auth_age": "10m", "webauthn": {"passkey_login": True}},
        routes=[{"name": "app", "prefix": "/app", "upstream": upstream, "auth": "none"},
                {"name": "keys", "prefix": "/keys", "upstream": upstream, "require": {"amr_any": ["hwk"]},
                 "headers": {"X-User-Amr": "amr"}}],
    ) as (base, log):
        yield base, log


async def test_webauthn_enrolment_second_step_and_passkey_login_in_chromium(stack):
    base, log = stack
    r = await run_page_async(base + "/app/index.html", timeout=90, authenticator={})
    assert isinstance(r, dict) and "error" not in r, r
    assert r["enrolled"] == {"methods": ["webauthn", "recovery"], "codes": 10} and r["credentials"] == 1
    assert r["stepUpAsked"] == {"status": 401, "url": "/auth/mfa/step-up?next=/keys/x"}
    assert r["steppedUp"] == {"amr": ["pwd", "hwk", "mfa"], "stored": ["pwd", "hwk", "mfa"], "status": 200,
                              "upstream": "pwd,hwk,mfa"}
    assert r["asked"] == {"isSecondFactor": True, "methods": ["webauthn", "recovery"], "rpId": "localhost"}
    assert r["second"] == {"ok": True, "amr": ["pwd", "hwk", "mfa"]}
    assert r["passkey"] == {"ok": True, "amr": ["hwk", "mfa"]}
    refused = {"ok": False, "name": "AuthError", "status": 401, "code": "second_factor_invalid"}
    assert r["crossed"] == refused
    assert r["beforeClone"]["ok"] and r["clone"] == refused
    assert "possible cloned WebAuthn authenticator" in log.read_text()
    # Chromium itself refuses a ceremony that requires user verification the authenticator no longer gives ...
    assert r["unverified"]["name"] == "NotAllowedError" and r["unverifiedPasskey"]["name"] == "NotAllowedError", r
    # ... and the gateway refuses the answer a page obtained by asking for less
    assert r["downgrade"] == {"status": 401, "code": "second_factor_invalid"}
