"""The page where a signed-in browser user manages second factors: ``GET <second_factor.path>/manage``.

For cookie mode only (the session is in the gateway's cookies; a bearer-mode app keeps its
tokens itself and builds its own page on the same JSON endpoints). The page is HTML and one
static script, ``gateway/static/manage.js`` (served at ``<path>/manage.js``), which does
everything through the existing JSON endpoints with the browser client (``client.js``:
the cookie-mode CSRF header, a refresh when the access cookie expired, the WebAuthn
ceremony): it lists the factors, enrols TOTP (the QR code comes from the endpoint, drawn
server-side), registers a named authenticator, removes one, regenerates recovery codes.
No rule is decided here that the endpoints do not decide again.

The ``GET`` decides where the browser goes first:

- no session: the sign-in page with ``next`` back here when it is served, else a 401 page;
- a session whose login is too old to change factors, or was made without the factor the
  user has (``check_fresh``, the endpoints' own rule): the step-up page, or the sign-in page
  for a user without a factor (a new password login is fresh), each with ``next`` back here;
- otherwise the page. ``next`` (the sign-in page's rule) becomes its "Continue" link.

Strict CSP like the other pages: the script is allowed by a nonce of this answer alone (its
imports, client.js, inherit it), the style by hash, ``data:`` images for the QR code, nothing
external, no framing, never cached.
"""
from __future__ import annotations

import html
import secrets
from urllib.parse import quote

from aiohttp import web

from gateway.auth.cookies import CookieMode
from gateway.auth.credentials import authenticate
from gateway.auth.redirects import page_next
from gateway.auth.sessions import AuthService
from gateway.config import GatewayConfig
from gateway.context import SUBJECT
from gateway.endpoints.factors import check_fresh, has_factor
from gateway.endpoints.oidc import login_url, redirect
from gateway.endpoints.oidc_pages import error_page
from gateway.endpoints.signin import page_headers, signin_served
from gateway.endpoints.step_up import step_up_url
from gateway.endpoints.table import Endpoint, static_script
from gateway.errors import ErrorCode, GatewayError
from gateway.factors.flow import FactorGate

__all__ = ["STYLE", "manage_endpoints"]

GET = frozenset({"GET", "HEAD"})

STYLE = """
body{font-family:system-ui,sans-serif;margin:0;background:#f6f6f6;color:#1a1a1a}
main{max-width:36rem;margin:3rem auto;padding:1.5rem;background:#fff;border:1px solid #ccc;border-radius:6px}
h1{font-size:1.4rem;margin-top:0}h2{font-size:1.1rem;margin-top:1.6rem}
ul{list-style:none;padding:0}li{margin:.4rem 0;display:flex;gap:.6rem;align-items:center;flex-wrap:wrap}
button{padding:.45rem .8rem;font-size:1rem;border:1px solid #1a4fa0;border-radius:4px;background:#1a4fa0;color:#fff;cursor:pointer}
button.remove{background:#fff;color:#a01a1a;border-color:#a01a1a}
button:focus,input:focus,a:focus{outline:3px solid #f0b000;outline-offset:2px}
label{display:block;margin:.6rem 0 .2rem}input{box-sizing:border-box;padding:.45rem;font-size:1rem}
img.qr{width:12rem;height:12rem;display:block;margin:.6rem 0}
code.secret,ol.codes{font-family:ui-monospace,monospace;font-size:1rem}
.panel{border:1px solid #ddd;border-radius:4px;padding:.8rem;margin:.6rem 0}
#manage-status{min-height:1.2em}.muted{color:#555}
"""

_SCRIPT = static_script("manage.js")


class ManagePage:
    def __init__(self, config: GatewayConfig, gate: FactorGate, auth: AuthService, cookies: CookieMode) -> None:
        assert config.second_factor is not None
        self.config = config
        self.gate = gate
        self.auth = auth
        self.cookies = cookies
        self.path = config.second_factor.manage_page
        self.signin = signin_served(config)

    def _here(self, target: str | None) -> str:
        return self.path if target is None else f"{self.path}?next={quote(target, safe='/')}"

    async def handle(self, request: web.Request) -> web.StreamResponse:
        try:
            target = page_next(request.query.getall("next", []), self.config.public_url,
                               self.config.oidc.allowed_redirect_origins)
        except ValueError as exc:
            return error_page(GatewayError(400, ErrorCode.INVALID_NEXT, str(exc)))
        try:
            return await self._page(request, target)
        except GatewayError as exc:  # a navigation ends on a page a person can read (a store down: 503)
            return error_page(exc)

    async def _page(self, request: web.Request, target: str | None) -> web.StreamResponse:
        here = self._here(target)
        try:
            claims = await authenticate(request, self.auth.tokens, self.auth.store, required=True, cookies=self.cookies)
        except GatewayError as exc:
            if exc.status != 401:
                raise
            return self._sign_in(here, "Sign in to manage your second factors.")
        subject = str(claims["sub"])
        request[SUBJECT] = subject
        try:
            await check_fresh(self.gate, claims)
        except GatewayError as exc:
            if exc.code != ErrorCode.INSUFFICIENT_USER_AUTHENTICATION:
                raise
            if await has_factor(self.gate, subject):
                return redirect(step_up_url(self.config, here) or here)
            return self._sign_in(here, "Changing second factors needs a recent sign-in: sign in again.")
        nonce = secrets.token_urlsafe(18)
        return web.Response(text=self.render(target, nonce), content_type="text/html",
                            headers=page_headers(None, STYLE, nonce=nonce, images=True))

    def _sign_in(self, here: str, detail: str) -> web.StreamResponse:
        if self.signin:
            return redirect(login_url(self.config, "signin", here))
        return error_page(GatewayError.unauthorized(ErrorCode.AUTHENTICATION_REQUIRED, detail, token_presented=False))

    def render(self, target: str | None, nonce: str) -> str:
        esc = html.escape
        settings, endpoints = self.config.cookies, self.config.endpoints
        assert self.config.second_factor is not None
        data = {
            "api": self.config.second_factor.path, "client": endpoints.client_js, "refresh": endpoints.refresh,
            "login": endpoints.token, "logout": endpoints.logout, "csrf-cookie": settings.csrf_name,
            "csrf-header": settings.csrf_header, "webauthn": "on" if self.gate.passkeys is not None else "off",
            "reauth": self._here(target),  # the page again: the GET above sends the browser where it must go
        }
        attributes = " ".join(f'data-{name}="{esc(value)}"' for name, value in data.items())
        back = f'<p><a id="continue" href="{esc(target)}">Continue</a></p>\n' if target is not None else ""
        webauthn = (
            '<section aria-labelledby="keys-title"><h2 id="keys-title">Passkeys and security keys</h2>\n'
            '<ul id="authenticators"></ul>\n'
            '<form id="add-key"><label for="key-name">Name of the new key</label>'
            '<input id="key-name" name="name" maxlength="64" required> <button type="submit">Add a passkey or security key'
            '</button></form></section>\n'
        ) if self.gate.passkeys is not None else ""
        return (
            '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>Second factors</title><style>{STYLE}</style></head>\n<body><main id=\"manage\" {attributes}>\n"
            "<h1>Second factors</h1>\n"
            '<p id="manage-status" role="status" aria-live="polite">Loading\u2026</p>\n'
            '<section aria-labelledby="totp-title"><h2 id="totp-title">Authenticator app</h2>\n'
            '<p id="totp-state" class="muted"></p>\n'
            '<button id="totp-begin" type="button" hidden>Set up an authenticator app</button>\n'
            '<button id="totp-remove" class="remove" type="button" hidden>Remove the authenticator app</button>\n'
            '<div id="totp-enrol" class="panel" hidden><p>Scan this code with your authenticator app, or type the key.</p>'
            '<img id="totp-qr" class="qr" alt="QR code of the new authenticator app entry">'
            '<p>Key: <code id="totp-secret" class="secret"></code></p>'
            '<form id="totp-confirm"><label for="totp-code">The code the app shows now</label>'
            '<input id="totp-code" name="code" inputmode="numeric" autocomplete="one-time-code" required> '
            '<button type="submit">Confirm</button></form></div></section>\n'
            f"{webauthn}"
            '<section aria-labelledby="codes-title"><h2 id="codes-title">Recovery codes</h2>\n'
            '<p id="codes-left" class="muted"></p>\n'
            '<button id="codes-new" type="button" hidden>New recovery codes</button>\n'
            '<div id="codes-shown" class="panel" hidden><p>Write these down now: they are shown once, and each works '
            'once. Any earlier codes no longer work.</p><ol id="codes" class="codes"></ol></div></section>\n'
            f"{back}"
            f'<script type="module" nonce="{esc(nonce)}" src="{esc(self.path)}.js"></script>\n'
            "</main></body></html>\n"
        )


def manage_endpoints(config: GatewayConfig, gate: FactorGate, auth: AuthService,
                     cookies: CookieMode | None) -> dict[str, Endpoint]:
    """The page and its script, in cookie mode (``cookies.enabled``) only."""
    if not config.cookies.enabled or cookies is None:
        return {}
    page = ManagePage(config, gate, auth, cookies)
    return {page.path: Endpoint(GET, page.handle), f"{page.path}.js": Endpoint(GET, _SCRIPT)}
