"""The built-in sign-in page, ``GET endpoints.signin`` (default ``/auth/signin``).

It lists the configured OpenID Providers as plain links to their login
endpoints and, in cookie mode, a password form for the user sources. ``next``
is checked by the one ``next`` rule (``auth.redirects.safe_next``) and carried
into every link; an unusable ``next`` is a 400 page, never a silent default.

Decisions where the issue is silent:

- The page exists when something can use it: a provider in
  ``oidc.providers``, or a route with ``login: signin``. Otherwise the path
  answers 404 as before, so a gateway that never asked for a sign-in page
  does not grow a password form.
- The password form is shown in cookie mode only (``cookies.enabled``): the
  session then lives in the gateway's HttpOnly cookies and any page at
  ``next`` is signed in. A bearer-mode single-page app keeps its tokens in its
  own storage, so it shows its own form (client.js ``login(user, password)``).
  The form posts JSON to the gateway's token endpoint from one static script,
  ``gateway/static/signin.js`` served at ``<endpoints.signin>.js`` (cookie
  mode refuses form-encoded logins: login CSRF), so it needs JavaScript; the
  provider links do not. The script finishes every second-factor case of the
  login on the page, through client.js in cookie mode (as the manage page
  does): a TOTP or recovery code, the user's security key or passkey (the
  WebAuthn ceremony for the ``mfa_token``), the enrolment of a required user
  who has no factor yet (TOTP, or a key where WebAuthn is on; recovery codes
  shown once; then the ``mfa_token`` alone finishes the login), and with
  ``passkey_login`` a passkey login without a password. A login in an
  enrolment grace period goes to the manage page first (docs/second-factor.md).
  The markup is ``signin_page.py``.
- No external asset, and a strict Content-Security-Policy: the script is
  allowed by a nonce of this answer alone (client.js, which it imports,
  inherits it), the one inline style by its SHA-256 hash, images only as
  ``data:`` (the QR code of a TOTP enrolment), the script may only talk to
  the gateway's own origin, and nothing may frame the page. Every configured
  value is HTML-escaped.
"""
from __future__ import annotations

import base64
import hashlib
import html
import secrets

from aiohttp import web

from gateway.auth.cookies import CookieMode
from gateway.auth.redirects import page_next
from gateway.config import GatewayConfig
from gateway.endpoints.oidc import login_url
from gateway.endpoints.oidc_pages import error_page
from gateway.endpoints.signin_page import STYLE, Steps, password_section
from gateway.endpoints.table import Endpoint, static_script
from gateway.endpoints.tokens import own_profile
from gateway.errors import ErrorCode, GatewayError

__all__ = ["STYLE", "SignInPage", "page_headers", "signin_endpoints", "signin_served"]

GET = frozenset({"GET", "HEAD"})

def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def page_headers(script: str | None, style: str, *, nonce: str | None = None, images: bool = False) -> dict[str, str]:
    """The headers of the gateway's own pages (sign-in, step-up, manage): a strict CSP allowing their one inline
    script and style by hash (or, for a page that loads its script from the gateway, that script by a nonce of
    this answer alone), nothing external (``images``: ``data:`` images, the QR code), no framing, never cached."""
    scripts = _sha256(script) if script is not None else f"'nonce-{nonce}'"
    assert script is not None or nonce
    return {
        "Content-Security-Policy": (
            f"default-src 'none'; script-src {scripts}; style-src {_sha256(style)}; "
            f"{'img-src data:; ' if images else ''}connect-src 'self'; "
            "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
        ),
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-store",
        "X-Frame-Options": "DENY",
    }


_SCRIPT = static_script("signin.js")


class SignInPage:
    """The page for one configuration: its providers, and whether the password form is shown."""

    def __init__(self, config: GatewayConfig, cookies: CookieMode | None) -> None:
        self.config = config
        self.providers = [(name, spec.display_name or name) for name, spec in config.oidc.providers.items()]
        own = own_profile(config)
        self.password = config.cookies.enabled and cookies is not None  # cookie mode: the session is in the cookies
        self.script = f"{config.endpoints.signin}.js"
        factor = config.second_factor if self.password else None
        webauthn = factor is not None and factor.webauthn is not None and config.public_url is not None
        self.steps = Steps(factor=factor is not None, webauthn=webauthn,
                           passkey=webauthn and factor is not None and factor.webauthn is not None and factor.webauthn.passkey_login)
        endpoints, settings = config.endpoints, config.cookies
        self.data = {  # the script's settings (data attributes of the form)
            "user-field": own.request.username, "password-field": own.request.password,
            "manage": factor.manage_page if factor is not None else "", "api": factor.path if factor is not None else "",
            "client": endpoints.client_js, "refresh": endpoints.refresh, "logout": endpoints.logout,
            "csrf-cookie": settings.csrf_name, "csrf-header": settings.csrf_header,
        }

    async def handle(self, request: web.Request) -> web.Response:
        try:
            target = page_next(request.query.getall("next", []), self.config.public_url,
                               self.config.oidc.allowed_redirect_origins) or "/"
        except ValueError as exc:
            return error_page(GatewayError(400, ErrorCode.INVALID_NEXT, str(exc)))
        nonce = secrets.token_urlsafe(18)
        return web.Response(text=self.render(target, nonce), content_type="text/html",
                            headers=page_headers(None, STYLE, nonce=nonce, images=self.steps.factor))

    def render(self, target: str, nonce: str) -> str:
        esc = html.escape
        parts = []
        if self.providers:
            links = "\n".join(
                f'<li><a class="provider" href="{esc(login_url(self.config, name, target))}" data-provider="{esc(name)}">'
                f"Sign in with {esc(display)}</a></li>"
                for name, display in self.providers
            )
            parts.append(f'<section aria-labelledby="providers-title"><h2 id="providers-title">With your organisation\'s '
                         f"account</h2>\n<ul>\n{links}\n</ul></section>")
        if self.password:
            parts.append(password_section(self.config.endpoints.token, {"next": target, **self.data}, self.steps))
            parts.append(f'<script type="module" nonce="{esc(nonce)}" src="{esc(self.script)}"></script>')
        if not parts:
            parts.append("<p>No way to sign in is configured here.</p>")
        body = "\n".join(parts)
        return (
            '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>Sign in</title><style>{STYLE}</style></head>\n"
            f"<body><main>\n<h1>Sign in</h1>\n{body}\n</main></body></html>\n"
        )


def signin_served(config: GatewayConfig) -> bool:
    """The page is served when a provider or a route can use it."""
    return bool(config.oidc.providers) or any(route.login == "signin" for route in config.routes)


def signin_endpoints(config: GatewayConfig, cookies: CookieMode | None) -> dict[str, Endpoint]:
    """The page's entry in the endpoint table at ``endpoints.signin``, when a provider or a route can use it."""
    if not signin_served(config):
        return {}
    page = SignInPage(config, cookies)
    table = {config.endpoints.signin: Endpoint(GET, page.handle)}
    if page.password:
        table[page.script] = Endpoint(GET, _SCRIPT)
    return table
