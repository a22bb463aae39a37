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
  The form posts JSON to the gateway's token endpoint from a small script
  (cookie mode refuses form-encoded logins: login CSRF), so it needs
  JavaScript; the provider links do not. A ``second_factor_required`` answer
  with a code to give (TOTP or recovery code) shows a code field, and the
  ``mfa_token`` goes back with the code to the same endpoint; a login in an
  enrolment grace period goes to the manage page first
  (docs/second-factor.md). WebAuthn and enrolment at the login are not done
  here.
- No external asset, and a strict Content-Security-Policy: the one inline
  script and the one inline style are allowed by their SHA-256 hashes, the
  script may only talk to the gateway's own origin, and nothing may frame the
  page. Every configured value is HTML-escaped.
"""
from __future__ import annotations

import base64
import hashlib
import html

from aiohttp import web

from gateway.auth.cookies import CookieMode
from gateway.auth.redirects import safe_next
from gateway.config import GatewayConfig
from gateway.endpoints.oidc import login_url
from gateway.endpoints.oidc_pages import error_page
from gateway.endpoints.table import Endpoint
from gateway.endpoints.tokens import own_profile
from gateway.errors import ErrorCode, GatewayError

__all__ = ["SCRIPT", "STYLE", "SignInPage", "page_headers", "signin_endpoints", "signin_served"]

GET = frozenset({"GET", "HEAD"})

# The page's only script: posts the password form as JSON to the token endpoint, then goes to `next`; when the
# answer is second_factor_required with a code to give, it shows the code field and posts the mfa_token with the
# code (TOTP) or recovery code to the same endpoint (docs/second-factor.md#the-login-flow).
# It reads everything from the form's data attributes, so it never changes and its hash is fixed.
SCRIPT = """
const form = document.getElementById('password-form');
const status = document.getElementById('password-status');
const factor = document.getElementById('factor-step');
let mfaToken = null;
function askForCode(token) {
  mfaToken = token;
  factor.hidden = token === null;
  form.elements.code.required = token !== null;
  form.elements.code.value = '';
  if (token !== null) form.elements.code.focus();
}
form.addEventListener('submit', async (event) => {
  event.preventDefault();
  const button = form.querySelector('button');
  button.disabled = true;
  status.textContent = 'Signing in\\u2026';
  try {
    const body = {};
    if (mfaToken !== null) {
      const code = form.elements.code.value.trim();
      body.mfa_token = mfaToken;
      body[/^[0-9]{6,8}$/.test(code) ? 'code' : 'recovery_code'] = code;
    } else {
      body[form.dataset.userField] = form.elements.username.value;
      body[form.dataset.passwordField] = form.elements.password.value;
    }
    const res = await fetch(form.action, {
      method: 'POST', credentials: 'same-origin', body: JSON.stringify(body),
      headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
    });
    const answer = await res.json().catch(() => ({}));
    if (res.ok) {
      const manage = form.dataset.manage;
      const next = form.dataset.next;
      // in the second-factor enrolment grace period: to the manage page first, then on to `next`
      location.assign(manage && answer.second_factor_enrolment_due && !next.startsWith(manage)
        ? `${manage}?next=${encodeURIComponent(next)}` : next);
      return;
    }
    if (answer.code === 'second_factor_required') {
      const methods = Array.isArray(answer.methods) ? answer.methods : [];
      if (methods.includes('totp') || methods.includes('recovery')) {
        askForCode(answer.mfa_token);
        status.textContent = 'Enter the code from your authenticator app, or a recovery code.';
      } else {
        status.textContent = methods.length ? 'This account signs in with a security key, which this page cannot use.'
          : 'This account must set up a second factor first, which this page cannot do.';
      }
    } else if (answer.code === 'mfa_token_invalid') {
      askForCode(null);
      status.textContent = 'That took too long, or too many codes were wrong. Sign in again.';
    } else {
      status.textContent = res.status === 429 ? 'Too many attempts. Wait a moment, then try again.'
        : res.status >= 500 ? 'Sign-in is unavailable right now. Try again later.'
        : mfaToken !== null ? 'The code is not right.' : 'The user name or password is not right.';
    }
  } catch (err) {
    status.textContent = 'The gateway could not be reached. Try again.';
  }
  button.disabled = false;
});
"""

STYLE = """
body{font-family:system-ui,sans-serif;margin:0;background:#f6f6f6;color:#1a1a1a}
main{max-width:24rem;margin:3rem auto;padding:1.5rem;background:#fff;border:1px solid #ccc;border-radius:6px}
h1{font-size:1.4rem;margin-top:0}h2{font-size:1rem}
ul{list-style:none;padding:0}li{margin:.5rem 0}
a.provider,button{display:block;width:100%;box-sizing:border-box;padding:.6rem;font-size:1rem;text-align:center;
border:1px solid #1a4fa0;border-radius:4px;background:#1a4fa0;color:#fff;text-decoration:none;cursor:pointer}
a.provider:focus,button:focus,input:focus{outline:3px solid #f0b000;outline-offset:2px}
label{display:block;margin:.6rem 0 .2rem}input{width:100%;box-sizing:border-box;padding:.5rem;font-size:1rem}
button{margin-top:1rem}#password-status{min-height:1.2em}
"""


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


HEADERS = page_headers(SCRIPT, STYLE)


class SignInPage:
    """The page for one configuration: its providers, and whether the password form is shown."""

    def __init__(self, config: GatewayConfig, cookies: CookieMode | None) -> None:
        self.config = config
        self.providers = [(name, spec.display_name or name) for name, spec in config.oidc.providers.items()]
        own = own_profile(config)
        self.password = config.cookies.enabled and cookies is not None  # cookie mode: the session is in the cookies
        self.token_path = config.endpoints.token
        self.fields = (own.request.username, own.request.password)
        self.manage = config.second_factor.manage_page if config.second_factor is not None and self.password else ""
        self.factor_step = (  # shown by the script when the password asks for a second factor
            '<div id="factor-step" hidden><label for="code">Code from your authenticator app, or a recovery code</label>'
            '<input id="code" name="code" autocomplete="one-time-code"></div>\n'
        ) if config.second_factor is not None else ""

    async def handle(self, request: web.Request) -> web.Response:
        values = request.query.getall("next", [])
        try:
            if len(values) > 1:
                raise ValueError("next: given more than once")
            target = safe_next(values[0] if values else None, self.config.public_url, self.config.oidc.allowed_redirect_origins)
        except ValueError as exc:
            return error_page(GatewayError(400, ErrorCode.INVALID_NEXT, str(exc)))
        return web.Response(text=self.render(target), content_type="text/html", headers=HEADERS)

    def render(self, target: str) -> str:
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
            user_field, password_field = self.fields
            parts.append(
                '<section aria-labelledby="password-title"><h2 id="password-title">With a user name and password</h2>\n'
                f'<form id="password-form" method="post" action="{esc(self.token_path)}" data-next="{esc(target)}" '
                f'data-user-field="{esc(user_field)}" data-password-field="{esc(password_field)}" '
                f'data-manage="{esc(self.manage)}">\n'
                '<label for="username">User name</label>'
                '<input id="username" name="username" autocomplete="username" required>\n'
                '<label for="password">Password</label>'
                '<input id="password" name="password" type="password" autocomplete="current-password" required>\n'
                f"{self.factor_step}"
                '<button type="submit">Sign in</button>\n'
                '<p id="password-status" role="status" aria-live="polite"></p>\n</form></section>'
                f"<script>{SCRIPT}</script>"
            )
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
    return {config.endpoints.signin: Endpoint(GET, SignInPage(config, cookies).handle)}
