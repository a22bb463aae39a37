"""TOTP (RFC 6238 through ``pyotp``): new secrets, the enrolment's QR code, and checking a code exactly once.

A code is valid in its own 30-second step and ``totp_window`` steps either side
(clock drift). The step a code matched is then claimed in the shared store
(``StateStore.put_once``, so on every instance at once): the same code, or any
code of an already used step, is refused for the rest of its validity. The QR
code is drawn by ``segno`` on the server as an SVG data URI: no request leaves
the browser for it, and a strict CSP (``img-src data:``) is enough.
"""
from __future__ import annotations

import hashlib
import hmac
import time

import pyotp
import segno

from gateway.stores import StateStore

__all__ = ["STEP", "Totp", "normalise_code"]

STEP = 30
DIGITS = 6


def normalise_code(code: object) -> str | None:
    """The six digits of a code as typed (spaces and a dash tolerated), or None for anything else."""
    if not isinstance(code, str) or len(code) > 16:
        return None
    digits = code.replace(" ", "").replace("-", "")
    return digits if len(digits) == DIGITS and digits.isascii() and digits.isdigit() else None


class Totp:
    def __init__(self, state: StateStore, window: int, issuer_name: str) -> None:
        self.state = state
        self.window = window
        self.issuer_name = issuer_name

    @staticmethod
    def new_secret() -> str:
        return pyotp.random_base32(32)  # 160 bits, RFC 4226's recommended length

    def provisioning(self, secret: str, account: str) -> dict[str, str]:
        """What the enrolment shows once: the secret, the otpauth URI, and the URI as a QR code (SVG data URI)."""
        uri = pyotp.TOTP(secret, digits=DIGITS, interval=STEP).provisioning_uri(name=account, issuer_name=self.issuer_name)
        qr = segno.make(uri, error="m").svg_data_uri(scale=4, border=2)
        return {"secret": secret, "otpauth_uri": uri, "qr_code": qr}

    def matching_step(self, secret: str, code: str, now: float | None = None) -> int | None:
        """The time step ``code`` belongs to within the window, or None; every candidate is compared in constant time."""
        otp = pyotp.TOTP(secret, digits=DIGITS, interval=STEP)
        current = int((time.time() if now is None else now) // STEP)
        found = None
        for step in range(current - self.window, current + self.window + 1):
            if hmac.compare_digest(otp.at(step * STEP), code) and found is None:
                found = step
        return found

    async def accept(self, subject: str, secret: str, code: object, now: float | None = None) -> bool:
        """True once for a valid code: its step is claimed for ``subject`` on every instance, so a replay is False."""
        digits = normalise_code(code)
        if digits is None:
            return False
        step = self.matching_step(secret, digits, now)
        if step is None:
            return False
        user = hashlib.sha256(subject.encode()).hexdigest()[:32]  # the store never holds login names
        lifetime = (2 * self.window + 2) * STEP  # past it, the step is outside every window anyway
        return await self.state.put_once(f"mfa:totp:{user}:{step}", "1", lifetime)
