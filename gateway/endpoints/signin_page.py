"""The sign-in page's style and the markup of its password form with every second-factor step of a login.

The markup is static HTML (configured values escaped); the script ``gateway/static/signin.js`` shows and hides
its parts. With ``second_factor``: the code field (TOTP or recovery code); with ``second_factor.webauthn``, the
button that runs the WebAuthn ceremony for the pending login, and with ``passkey_login`` a passkey login button;
the enrolment at the login of a required user who has no factor yet (TOTP with its QR code and key, a security
key or passkey where WebAuthn is on), the recovery codes shown once, and "Continue" to ``next``.
"""
from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Mapping

__all__ = ["STYLE", "Steps", "password_section"]

STYLE = """
body{font-family:system-ui,sans-serif;margin:0;background:#f6f6f6;color:#1a1a1a}
main{max-width:24rem;margin:3rem auto;padding:1.5rem;background:#fff;border:1px solid #ccc;border-radius:6px}
h1{font-size:1.4rem;margin-top:0}h2{font-size:1rem}[hidden]{display:none!important}
ul{list-style:none;padding:0}li{margin:.5rem 0}
a.provider,button{display:block;width:100%;box-sizing:border-box;padding:.6rem;font-size:1rem;text-align:center;
border:1px solid #1a4fa0;border-radius:4px;background:#1a4fa0;color:#fff;text-decoration:none;cursor:pointer}
a.provider:focus,button:focus,input:focus{outline:3px solid #f0b000;outline-offset:2px}
label{display:block;margin:.6rem 0 .2rem}input{width:100%;box-sizing:border-box;padding:.5rem;font-size:1rem}
button{margin-top:1rem}#password-status{min-height:1.2em}
.panel{border:1px solid #ddd;border-radius:4px;padding:.8rem;margin:.8rem 0}
img.qr{width:12rem;height:12rem;display:block;margin:.6rem auto}
code.secret,ol.codes{font-family:ui-monospace,monospace;font-size:1rem;word-break:break-all}
"""

_CODE = (
    '<div id="factor-step" hidden><label for="code">Code from your authenticator app, or a recovery code</label>'
    '<input id="code" name="code" autocomplete="one-time-code"></div>\n'
)
_KEY = '<div id="webauthn-step" hidden><button id="use-key" type="button">Use your security key or passkey</button></div>\n'
_PASSKEY = '<button id="passkey-login" type="button">Sign in with a passkey</button>\n'
_ENROL_TOTP = (
    '<button id="enrol-totp-begin" type="button">Set up an authenticator app</button>\n'
    '<div id="enrol-totp" class="panel" hidden><p>Scan this code with your authenticator app, or type the key.</p>'
    '<img id="enrol-qr" class="qr" alt="QR code of the new authenticator app entry">'
    '<p>Key: <code id="enrol-secret" class="secret"></code></p>'
    '<form id="enrol-totp-form"><label for="enrol-code">The code the app shows now</label>'
    '<input id="enrol-code" name="code" inputmode="numeric" autocomplete="one-time-code" required>'
    '<button type="submit">Confirm</button></form></div>\n'
)
_ENROL_KEY = (
    '<form id="enrol-key-form" class="panel"><label for="enrol-key-name">Name of your security key or passkey</label>'
    '<input id="enrol-key-name" name="name" maxlength="64" value="Security key" required>'
    '<button type="submit">Add a security key or passkey</button></form>\n'
)
_ENROL_DONE = (
    '<div id="enrol-done" class="panel" hidden><p>Your recovery codes: write them down now. They are shown only '
    'this once, and each works once if you lose your second factor.</p><ol id="recovery-codes" class="codes"></ol>'
    '<button id="continue" type="button">Continue</button></div>\n'
)


@dataclass(frozen=True, slots=True)
class Steps:
    """Which second-factor steps the page offers: all off without ``second_factor``."""

    factor: bool = False  # second_factor: the code field and the enrolment with TOTP
    webauthn: bool = False  # second_factor.webauthn (and public_url): the key button and enrolment with a key
    passkey: bool = False  # second_factor.webauthn.passkey_login


def password_section(action: str, data: Mapping[str, str], steps: Steps) -> str:
    """The password form (posting to ``action``, its script's settings in ``data``) and the second-factor steps."""
    esc = html.escape
    attributes = " ".join(f'data-{name}="{esc(value)}"' for name, value in data.items())
    enrol = ""
    if steps.factor:
        enrol = (
            '<div id="enrol-step" hidden><h2>Set up a second factor</h2>\n<div id="enrol-choices">\n'
            f"{_ENROL_TOTP}{_ENROL_KEY if steps.webauthn else ''}</div>\n{_ENROL_DONE}</div>\n"
        )
    return (
        '<section aria-labelledby="password-title"><h2 id="password-title">With a user name and password</h2>\n'
        f'<form id="password-form" method="post" action="{esc(action)}" {attributes}>\n'
        '<div id="credentials"><label for="username">User name</label>'
        '<input id="username" name="username" autocomplete="username" required>\n'
        '<label for="password">Password</label>'
        '<input id="password" name="password" type="password" autocomplete="current-password" required></div>\n'
        f"{_CODE if steps.factor else ''}"
        '<button id="sign-in" type="submit">Sign in</button>\n'
        f"{_KEY if steps.webauthn else ''}"
        '<p id="password-status" role="status" aria-live="polite"></p>\n</form>\n'
        f"{enrol}{_PASSKEY if steps.passkey else ''}</section>"
    )
