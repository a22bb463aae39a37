"""Sign-in through a real OpenID Provider in headless Chromium: oidc-provider (tests/support/oidc.py) and the
gateway as real processes, the browser typing into the provider's own login and consent pages.

- cookie mode: the built-in sign-in page (no CSP violation) -> provider -> the gateway's cookies -> a route
  with the injected identity; silent refresh after expiry; logout at the gateway with the provider's
  end_session (its confirmation page, back to the validated post_logout_redirect_uri); afterwards a
  navigation to a `login:` route is sent to the provider, which asks for the password again.
- bearer mode with client.js: login(provider) -> `#gateway_code` taken out of the URL and exchanged once
  (a second exchange of the same code refused); identity, silent refresh, logout() following the
  gateway's end_session_url; the old refresh token is dead.
- logout at the provider alone: its back-channel logout token ends the gateway session.
- the sign-in page's password form (its hash-allowed script running under the page's CSP).
- a `#gateway_code` arriving in a link this tab did not ask for is not exchanged (login CSRF).
- step-up at a trusted provider: a navigation to a route asking for the level `mfa` after a password-only
  sign-in goes back to the provider's login (`prompt=login`), and the login with a second factor reaches the page;
  in bearer mode client.js's stepUpAtProvider() does the round trip and keeps the session's refresh token.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path
from typing import Any, AsyncIterator

import pytest
import yaml
from aiohttp import web

from harness import BROWSER_DIR, NODE, BrowserRunError, free_port
from stack import PASSWORD, SECRET, RunningGateway, Site, run_gateway
from tests.support.oidc import OidcClient, OidcProvider, OidcUser, client_session, sign_in

CLIENT_SECRET = "gateway-client-secret-0123456789abcdef"
ALICE = OidcUser("alice", "alice-at-the-idp", email="alice@corp.example", name="Alice", groups=("staff", "admins"))
FLOW = BROWSER_DIR / "flow.mjs"
STEP_TIMEOUT = 30.0


class IdentitySite(Site):
    """The stack's site, its API also reporting the email and groups headers, its pages also under /private."""

    def app(self) -> web.Application:
        app = super().app()
        app.router.add_get("/private/page/{name}", self._page)
        return app

    async def _api(self, request: web.Request) -> web.Response:
        return web.json_response({"user": request.headers.get("X-User-Id"), "email": request.headers.get("X-User-Email"),
                                  "groups": request.headers.get("X-User-Groups"), "path": request.path})


# After sign-in, on the gateway's origin. `refresh` waits past the 2 s access lifetime, so the second call
# needs a silent refresh (counted between the marks in the access log).
COOKIE_HOME = r"""<script type=module>
import { createClient } from '/auth/client.js';
const gw = createClient({ mode: 'cookie' });
window.doLogout = () => gw.logout({ endSession: true });
run(async () => {
  const first = await gw.fetch('/api/whoami');
  await sleep(2800);
  await mark('refresh-start');
  const second = await gw.fetch('/api/whoami');
  await mark('refresh-end');
  return { first: [first.status, await first.json()], second: [second.status, await second.json()],
           cookies: document.cookie };
});
</script>"""

SPA = r"""<script>window.hashAtLoad = location.hash;</script>
<script type=module>
import { createClient } from '/auth/client.js';
const gw = createClient();
window.gw = gw;
const signedIn = await gw.completeLogin().catch((e) => ({ failed: String(e) }));
if (!signedIn) {
  gw.login('test', { next: '/app/page/spa' });
} else run(async () => {
  const code = new URLSearchParams(window.hashAtLoad.slice(1)).get('gateway_code');
  const replay = await fetch('/auth/oidc/exchange', { method: 'POST', body: JSON.stringify({ code }),
                                                      headers: { 'Content-Type': 'application/json' } });
  const first = await gw.fetch('/api/whoami');
  const access = gw.accessToken;
  await sleep(2800);
  await mark('refresh-start');
  const second = await gw.fetch('/api/whoami');
  await mark('refresh-end');
  sessionStorage.setItem('old_refresh', gw.refreshToken);
  return { signedIn: Object.keys(signedIn).sort(), codeSeen: Boolean(code), urlAfter: location.href,
           replay: replay.status, first: [first.status, await first.json()], second: [second.status, await second.json()],
           rotated: access !== gw.accessToken };
});
</script>"""

BYE = r"""<script type=module>
run(async () => {
  const api = await fetch('/api/whoami');
  const old = sessionStorage.getItem('old_refresh');
  const refresh = old ? (await fetch('/auth/token/refresh', { method: 'POST', body: JSON.stringify({ refresh: old }),
                                                              headers: { 'Content-Type': 'application/json' } })).status : null;
  return { api: api.status, refresh, cookies: document.cookie, marker: sessionStorage.getItem('gw_oidc_provider') };
});
</script>"""

# A page opened from a link that carries a code this tab never asked for (login CSRF).
FOREIGN_CODE = r"""<script type=module>
import { createClient } from '/auth/client.js';
const gw = createClient();
const outcome = await gw.completeLogin().then(() => 'exchanged', (e) => e.message);
run(async () => ({ outcome, url: location.href, access: gw.accessToken, api: (await gw.fetch('/api/whoami')).status }));
</script>"""

# Bearer mode, tokens in sessionStorage (they must outlive the trips to the provider): sign in, a route asking for
# the level `mfa` refuses the password-only session, stepUpAtProvider() goes back to the provider, and on return the
# exchanged code gives a fresh access token of the same session, the refresh token kept.
SPA_STEP_UP = r"""<script type=module>
import { createClient, localStorageAdapter } from '/auth/client.js';
const gw = createClient({ storage: localStorageAdapter('gw_', sessionStorage) });
const back = await gw.completeLogin().catch((e) => ({ failed: String(e) }));
const stage = sessionStorage.getItem('stage');
if (!stage) {
  sessionStorage.setItem('stage', 'signed-in');
  gw.login('test', { next: '/app/page/spa-step' });
} else if (stage === 'signed-in') {
  const refused = await gw.fetch('/api/strong/whoami');
  const body = await refused.json();
  sessionStorage.setItem('stage', 'stepped-up');
  sessionStorage.setItem('refused', JSON.stringify({ status: refused.status, code: body.code, url: body.step_up_url }));
  await gw.stepUpAtProvider(body.step_up_url);
} else run(async () => {
  const refused = JSON.parse(sessionStorage.getItem('refused'));
  const strong = await gw.fetch('/api/strong/whoami');
  const kept = Boolean(gw.refreshToken);
  await sleep(2300); // past the access token's 2 s: a silent refresh with the refresh token the step-up kept
  const later = await gw.fetch('/api/whoami');
  return { back: back && Object.keys(back).sort(), refused, keptRefresh: kept, later: later.status,
           strong: [strong.status, await strong.json()], urlAfter: location.href };
});
</script>"""

CHECK = r"""<script type=module>
run(async () => {
  const res = await fetch('/api/whoami');
  return { api: res.status, user: res.ok ? (await res.json()).user : null };
});
</script>"""



class Stack:
    """The provider, the gateway (cookie or bearer mode) and the site; ``flow(steps)`` drives Chromium."""

    def __init__(self, tmp: Path, op: OidcProvider, gateway: RunningGateway, site: IdentitySite) -> None:
        self.tmp, self.op, self.gateway, self.site = tmp, op, gateway, site

    @property
    def gw(self) -> str:
        return self.gateway.url

    def sign_in_steps(self, amr: str = "", consent: bool = True) -> list[dict[str, Any]]:
        """At the provider: its login form (``amr``: how the provider says the user signed in), then its consent form."""
        steps: list[dict[str, Any]] = [{"waitFor": "#login-name"}, {"fill": ["#login-name", ALICE.sub]},
                                       {"fill": ["#login-password", ALICE.password]}]
        if amr:
            steps.append({"fill": ["#login-amr", amr]})
        steps.append({"click": "#login-submit"})
        return steps + ([{"waitFor": "#consent-submit"}, {"click": "#consent-submit"}] if consent else [])

    async def flow(self, steps: list[dict[str, Any]]) -> dict[str, Any]:
        path = self.tmp / f"steps-{free_port()}.json"
        path.write_text(json.dumps(steps))
        proc = await asyncio.create_subprocess_exec(NODE, str(FLOW), str(path), "--timeout", str(int(STEP_TIMEOUT * 1000)),
                                                    cwd=BROWSER_DIR, stdout=asyncio.subprocess.PIPE,
                                                    stderr=asyncio.subprocess.PIPE)
        try:
            out, err = await asyncio.wait_for(proc.communicate(), STEP_TIMEOUT * (len(steps) + 3))
        except TimeoutError:
            proc.kill()
            out, err = await proc.communicate()
        stdout, stderr = out.decode(errors="replace"), err.decode(errors="replace")
        if proc.returncode != 0:
            raise BrowserRunError(proc.returncode or -1, stdout, stderr + "\n--- provider ---\n" + self.op.log()[-3000:]
                                  + "\n--- gateway ---\n" + self.gateway.log.read_text(errors="replace")[-6000:], str(path))
        result: dict[str, Any] = json.loads(stdout.strip().splitlines()[-1])
        return result


@pytest.fixture
async def stack(tmp_path: Path, aiohttp_server: Any, browser_env: Any) -> AsyncIterator[Any]:
    """``start(cookie_mode)`` -> Stack: everything on free loopback ports, stopped after the test."""
    from gateway.sources.users import hash_password

    async with contextlib.AsyncExitStack() as exits:
        async def start(cookie_mode: bool, trusted: bool = False) -> Stack:
            site = IdentitySite({"home": COOKIE_HOME, "spa": SPA, "bye": BYE, "check": CHECK,
                                  "foreign": FOREIGN_CODE, "strong": CHECK, "spa-step": SPA_STEP_UP})
            server = await aiohttp_server(site.app(), host="127.0.0.1")
            port = free_port()
            gw = f"http://127.0.0.1:{port}"
            client = OidcClient("gateway", [f"{gw}/auth/oidc/test/callback"], client_secret=CLIENT_SECRET,
                                post_logout_redirect_uris=[f"{gw}/app/page/bye"],
                                backchannel_logout_uri=f"{gw}/auth/oidc/test/backchannel-logout")
            op = await exits.enter_async_context(OidcProvider(tmp_path, [client], [ALICE]))
            upstream = f"http://127.0.0.1:{server.port}"
            identity = {"X-User-Id": "sub", "X-User-Email": "email", "X-User-Groups": "groups"}
            config: dict[str, Any] = {
                "tokens": {"secret": SECRET, "access_lifetime": "2s", "refresh_lifetime": "1h", "leeway": "0s",
                           "refresh_grace": "0s"},
                "store": {"backend": "memory"},
                "users_file": "users.yaml",
                "public_url": gw,
                "oidc": {"providers": {"test": {
                    "issuer": op.issuer, "client_id": "gateway", "client_secret": CLIENT_SECRET, "display_name": "Test IdP",
                    "claims": {"email": "email", "name": "name", "groups": "groups"}, "end_session": True,
                    "trust_authentication": trusted}},
                    "post_logout_redirect_uris": [f"{gw}/app/page/bye"]},
                "routes": [
                    {"name": "app", "prefix": "/app", "upstream": upstream, "auth": "none"},
                    {"name": "strong", "prefix": "/private/page/strong", "upstream": upstream, "login": "test",
                     "require": {"acr": "mfa"}},
                    {"name": "private", "prefix": "/private", "upstream": upstream, "login": "test"},
                    {"name": "strong-api", "prefix": "/api/strong", "upstream": upstream, "headers": identity,
                     "require": {"acr": "mfa"}},
                    {"name": "api", "prefix": "/api", "upstream": upstream, "headers": identity},
                ],
                "listen": {"host": "127.0.0.1", "port": port},
            }
            # aiohttp (the attacker's client below) sends no Secure cookie over http; Chromium treats 127.0.0.1 as secure
            config["cookies"] = {"enabled": cookie_mode, "secure": cookie_mode}
            users = {"bob": {"password_hash": hash_password(PASSWORD), "claims": {}}}
            (tmp_path / "users.yaml").write_text(yaml.safe_dump({"users": users}))
            (tmp_path / "gateway.yaml").write_text(yaml.safe_dump(config))
            gateway = await exits.enter_async_context(run_gateway(tmp_path / "gateway.yaml", port, tmp_path / "gateway.log"))
            site.gateway = gateway.url
            return Stack(tmp_path, op, gateway, site)

        yield start


def assert_identity(answer: list[Any]) -> None:
    status, body = answer
    assert status == 200, answer
    assert (body["user"], body["email"]) == ("test:alice", "alice@corp.example")
    assert set(body["groups"].replace(",", " ").split()) == {"staff", "admins"}


def no_csp_violation(console: list[str]) -> None:
    assert not [line for line in console if "Content Security Policy" in line or "pageerror" in line], console


async def test_cookie_mode_sign_in_page_refresh_and_logout_at_the_provider(stack: Any) -> None:
    s: Stack = await stack(cookie_mode=True)
    out = await s.flow([
        {"goto": f"{s.gw}/auth/signin?next=/private/page/home"},
        {"click": "a[data-provider=test]"},
        *s.sign_in_steps(),
        {"waitForURL": "/private/page/home$"},
        {"result": True},
        {"evaluate": "setTimeout(() => window.doLogout(), 0), true"},
        {"waitFor": "#logout-yes"},
        {"click": "#logout-yes"},
        {"waitForURL": "/app/page/bye"},
        {"result": True},
        # the provider's session ended too: a protected page sends the browser to a fresh provider login
        {"goto": f"{s.gw}/private/page/home"},
        {"waitFor": "#login-name"},
        {"url": True},
    ])
    no_csp_violation(out["console"])
    home, _, bye, login_page = out["results"]
    assert_identity(home["first"])
    assert_identity(home["second"])
    assert home["cookies"].startswith("gw_csrf=") and "gw_access" not in home["cookies"]  # HttpOnly
    log = s.gateway.between("refresh-start", "refresh-end")
    assert s.gateway.hits("/auth/token/refresh", log) == [200]
    assert bye["api"] == 401 and "gw_csrf" not in bye["cookies"]
    assert login_page.startswith(f"{s.op.issuer}/interaction/")
    assert "backchannel.success client=gateway sub=alice" in s.op.log()  # sent, and the gateway answered 200


async def test_bearer_mode_login_provider_with_client_js(stack: Any) -> None:
    s: Stack = await stack(cookie_mode=False)
    out = await s.flow([
        {"goto": f"{s.gw}/app/page/spa"},
        *s.sign_in_steps(),
        {"waitForURL": "/app/page/spa"},
        {"result": True},
        {"evaluate": "setTimeout(() => window.gw.logout(), 0), true"},
        {"waitFor": "#logout-yes"},
        {"click": "#logout-yes"},
        {"waitForURL": "/app/page/bye"},
        {"result": True},
    ])
    no_csp_violation(out["console"])
    spa, _, bye = out["results"]
    assert spa["signedIn"] == ["access", "expires_in", "refresh", "token_type"] and spa["codeSeen"]  # as POST /auth/token
    assert spa["urlAfter"] == f"{s.gw}/app/page/spa"  # the code left the address bar at once
    assert spa["replay"] == 400  # single use
    assert_identity(spa["first"])
    assert_identity(spa["second"])
    assert spa["rotated"]
    log = s.gateway.between("refresh-start", "refresh-end")
    assert s.gateway.hits("/auth/token/refresh", log) == [200]
    assert bye["refresh"] == 401 and bye["api"] == 401 and bye["marker"] is None


async def test_logout_at_the_provider_ends_the_gateway_session(stack: Any) -> None:
    s: Stack = await stack(cookie_mode=True)
    out = await s.flow([
        {"goto": f"{s.gw}/private/page/check"},  # a navigation to a `login:` route: off to the provider
        *s.sign_in_steps(),
        {"waitForURL": "/private/page/check$"},
        {"result": True},
        {"goto": f"{s.op.issuer}/session/end"},  # RP-independent logout at the provider
        {"waitFor": "#logout-yes"},
        {"click": "#logout-yes"},
        {"waitFor": "#signed-out"},
        {"goto": f"{s.gw}/app/page/check"},
        {"result": True},
    ])
    before, after = out["results"]
    assert before == {"api": 200, "user": "test:alice"} and after == {"api": 401, "user": None}
    assert "backchannel.success client=gateway sub=alice" in s.op.log()


async def test_a_code_from_a_link_is_not_exchanged(stack: Any) -> None:
    """Login CSRF: an attacker signs in with their own account, stops before the exchange, and sends the
    victim a link with that code. client.js only takes a code in a tab that started a sign-in itself."""
    s: Stack = await stack(cookie_mode=False)
    async with client_session() as attacker:
        back = await sign_in(attacker, f"{s.gw}/auth/oidc/test/login?next=/app/page/foreign&deliver=code", "alice",
                             ALICE.password)
        async with attacker.get(back, allow_redirects=False) as resp:
            link = resp.headers["Location"]
        assert "#gateway_code=" in link
        out = await s.flow([{"goto": f"{s.gw}{link}"}, {"result": True}])
        [page] = out["results"]
        assert page["outcome"].startswith("a sign-in code this tab did not ask for")
        assert page["url"] == f"{s.gw}/app/page/foreign" and page["access"] is None and page["api"] == 401
        code = link.split("#gateway_code=", 1)[1]
        async with attacker.post(f"{s.gw}/auth/oidc/exchange", json={"code": code}) as resp:
            assert resp.status == 200  # never spent by the victim's browser


async def test_password_form_of_the_sign_in_page(stack: Any) -> None:
    s: Stack = await stack(cookie_mode=True)
    status = "#password-status"
    out = await s.flow([
        {"goto": f"{s.gw}/auth/signin?next=/private/page/check"},
        {"fill": ["#username", "bob"]},
        {"fill": ["#password", "not the password"]},
        {"click": "#password-form button"},
        {"waitFor": f"{status}:has-text('not right')"},
        {"evaluate": f"document.querySelector('{status}').textContent"},
        {"fill": ["#password", PASSWORD]},
        {"click": "#password-form button"},
        {"waitForURL": "/private/page/check$"},
        {"result": True},
    ])
    no_csp_violation(out["console"])
    refused, page = out["results"]
    assert refused == "The user name or password is not right."
    assert page == {"api": 200, "user": "bob"}


async def test_step_up_at_a_trusted_provider_in_cookie_mode(stack: Any) -> None:
    s: Stack = await stack(cookie_mode=True, trusted=True)
    out = await s.flow([
        {"goto": f"{s.gw}/private/page/strong"},  # no session: off to the provider
        *s.sign_in_steps(amr="pwd"),
        {"waitFor": "#login-name"},  # signed in with a password only: the route's step-up, back at the provider
        {"url": True},
        *s.sign_in_steps(amr="pwd,otp", consent=False),
        {"waitForURL": "/private/page/strong$"},
        {"result": True},
    ])
    no_csp_violation(out["console"])
    asked, page = out["results"]
    assert asked.startswith(f"{s.op.issuer}/interaction/")
    assert page == {"api": 200, "user": "test:alice"}
    assert s.gateway.hits("/auth/oidc/step-up") == [302]


async def test_step_up_at_a_trusted_provider_in_bearer_mode_with_client_js(stack: Any) -> None:
    s: Stack = await stack(cookie_mode=False, trusted=True)
    out = await s.flow([
        {"goto": f"{s.gw}/app/page/spa-step"},
        *s.sign_in_steps(amr="pwd"),
        {"waitFor": "#login-name"},  # the API's step-up refusal: stepUpAtProvider() went back to the provider
        *s.sign_in_steps(amr="pwd,otp", consent=False),
        {"waitForURL": "/app/page/spa-step$"},
        {"result": True},
    ])
    no_csp_violation(out["console"])
    [page] = out["results"]
    refused = page["refused"]
    assert refused["status"] == 401 and refused["code"] == "insufficient_user_authentication"
    assert refused["url"].startswith("/auth/oidc/step-up?")
    assert page["back"] == ["access", "expires_in", "token_type"]  # the step-up's answer: an access token alone
    assert page["keptRefresh"] and page["urlAfter"] == f"{s.gw}/app/page/spa-step", page  # the code left the address bar
    assert page["strong"][0] == 200 and page["strong"][1]["user"] == "test:alice"
    assert page["later"] == 200 and s.gateway.hits("/auth/token/refresh")[-1:] == [200]
    assert s.gateway.hits("/auth/oidc/step-up") == [200]
