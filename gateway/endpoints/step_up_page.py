"""The step-up page (``GET <second_factor.path>/step-up``): its one script and style, and the HTML.

The page offers what the signed-in user can prove: the user's WebAuthn authenticators (a button that runs
``navigator.credentials.get`` with a challenge from ``<path>/step-up/options``) and a field for a TOTP or
recovery code. Which of the two it shows comes from the session the page was opened with; without one
(an expired cookie, a bearer SPA's tab) it shows both, and the answer of the POST tells the rest.

The script is inline and allowed by its hash (strict CSP: no external asset, ``connect-src 'self'``). It
posts JSON with the CSRF header in cookie mode, then goes to ``next``. Binary WebAuthn values travel as
base64url strings, the JSON form the gateway reads (as client.js does).
"""
from __future__ import annotations

import html
from dataclasses import dataclass

from gateway.endpoints.signin import page_headers

__all__ = ["HEADERS", "SCRIPT", "STYLE", "Offer", "render"]

SCRIPT = """
const page = document.getElementById('step-up');
const status = document.getElementById('step-up-status');
const b64 = (buf) => btoa(String.fromCharCode(...new Uint8Array(buf))).replace(/\\+/g, '-').replace(/\\//g, '_').replace(/=+$/, '');
const bytes = (text) => Uint8Array.from(atob(text.replace(/-/g, '+').replace(/_/g, '/')), (c) => c.charCodeAt(0));
const post = (url, body) => {
  const headers = { 'Content-Type': 'application/json', Accept: 'application/json' };
  const csrf = document.cookie.split('; ').find((c) => c.startsWith(page.dataset.csrfCookie + '='));
  if (csrf) { headers[page.dataset.csrfHeader] = decodeURIComponent(csrf.slice(page.dataset.csrfCookie.length + 1)); }
  return fetch(url, { method: 'POST', credentials: 'same-origin', body: JSON.stringify(body), headers });
};
const finish = (res) => {
  if (res.ok) { location.assign(page.dataset.next); return true; }
  status.textContent = res.status === 429 ? 'Too many attempts. Wait a moment, then try again.'
    : res.status === 401 ? 'That did not confirm it is you, or your session has ended.'
    : res.status === 409 ? 'You have no second factor of that kind.'
    : 'It could not be checked. Try again later.';
  return false;
};
const attempt = async (button, work) => {
  button.disabled = true;
  status.textContent = 'Checking\\u2026';
  try { if (await work()) { return; } } catch (err) {
    status.textContent = err && err.name === 'NotAllowedError' ? 'The authenticator did not answer. Try again.'
      : 'The gateway could not be reached. Try again.';
  }
  button.disabled = false;
};
const form = document.getElementById('step-up-form');
if (form) {
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    attempt(form.querySelector('button'), async () => {
      const value = form.elements.code.value.trim();
      return finish(await post(page.dataset.action, /^[0-9]{6,8}$/.test(value) ? { code: value } : { recovery_code: value }));
    });
  });
}
const key = document.getElementById('step-up-webauthn');
if (key) {
  key.addEventListener('click', () => attempt(key, async () => {
    const asked = await post(page.dataset.action + '/options', {});
    if (!asked.ok) { return finish(asked); }
    const options = (await asked.json()).publicKey;
    const cred = await navigator.credentials.get({ publicKey: { ...options, challenge: bytes(options.challenge),
      allowCredentials: (options.allowCredentials || []).map((c) => ({ ...c, id: bytes(c.id) })) } });
    const r = cred.response;
    const answer = { id: cred.id, rawId: b64(cred.rawId), type: cred.type, clientExtensionResults: {},
      response: { clientDataJSON: b64(r.clientDataJSON), authenticatorData: b64(r.authenticatorData),
                  signature: b64(r.signature), ...(r.userHandle ? { userHandle: b64(r.userHandle) } : {}) } };
    return finish(await post(page.dataset.action, { webauthn: answer }));
  }));
}
"""

STYLE = """
body{font-family:system-ui,sans-serif;margin:0;background:#f6f6f6;color:#1a1a1a}
main{max-width:24rem;margin:3rem auto;padding:1.5rem;background:#fff;border:1px solid #ccc;border-radius:6px}
h1{font-size:1.4rem;margin-top:0}
button{display:block;width:100%;box-sizing:border-box;padding:.6rem;font-size:1rem;margin-top:1rem;
border:1px solid #1a4fa0;border-radius:4px;background:#1a4fa0;color:#fff;cursor:pointer}
button:focus,input:focus{outline:3px solid #f0b000;outline-offset:2px}
label{display:block;margin:.6rem 0 .2rem}input{width:100%;box-sizing:border-box;padding:.5rem;font-size:1rem}
#step-up-status{min-height:1.2em}
"""

HEADERS = page_headers(SCRIPT, STYLE)


@dataclass(frozen=True, slots=True)
class Offer:
    """What the page offers: the names of the user's authenticators (None: no WebAuthn button), and the code field."""

    authenticators: tuple[str, ...] | None
    code: bool


def render(action: str, target: str, csrf_cookie: str, csrf_header: str, offer: Offer) -> str:
    esc = html.escape
    parts = [
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>Confirm it is you</title><style>{STYLE}</style></head>\n<body>"
        f'<main id="step-up" data-action="{esc(action)}" data-next="{esc(target)}" '
        f'data-csrf-cookie="{esc(csrf_cookie)}" data-csrf-header="{esc(csrf_header)}">\n<h1>Confirm it is you</h1>\n'
        "<p>This page needs a recent check of your second factor.</p>\n"
    ]
    if offer.authenticators is not None:
        named = f" ({esc(', '.join(offer.authenticators))})" if offer.authenticators else ""
        parts.append(f'<button type="button" id="step-up-webauthn">Use your security key or passkey{named}</button>\n')
    if offer.code:
        parts.append(
            f'<form id="step-up-form" method="post" action="{esc(action)}">\n'
            '<label for="code">Code from your authenticator app, or a recovery code</label>'
            '<input id="code" name="code" autocomplete="one-time-code" required>\n'
            '<button type="submit">Continue</button>\n</form>\n'
        )
    parts.append('<p id="step-up-status" role="status" aria-live="polite"></p>\n'
                 f"<script>{SCRIPT}</script>\n</main></body></html>\n")
    return "".join(parts)
