"""Cookie mode: the browser keeps the tokens in HttpOnly cookies, scripts never see them.

CSRF protection is a signed double-submit token. Next to the HttpOnly token
cookies the gateway sets a readable ``gw_csrf`` cookie whose value is
``nonce.HMAC(key, family, nonce)``; every state-changing request authenticated
by a cookie must echo that value in the ``X-CSRF-Token`` header. Another site
can make the browser send the cookies but can neither read the CSRF cookie nor
forge a value for the victim's session (the HMAC binds it to the session's
token family), so it cannot produce the header.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Callable

from aiohttp import web
from multidict import CIMultiDict

from gateway.config import Cookies
from gateway.errors import ErrorCode, GatewayError

__all__ = ["SAFE_METHODS", "CookieMode"]

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})


class CookieMode:
    """Writes, reads and clears the gateway's cookies, and checks the CSRF header."""

    def __init__(self, settings: Cookies, secret: bytes, lifetime: float) -> None:
        self.settings = settings
        self._key = hmac.new(secret, b"gateway csrf key", hashlib.sha256).digest()
        self._lifetime = int(lifetime)  # every cookie lives as long as the session may
        self.names = frozenset({settings.access_name, settings.refresh_name, settings.csrf_name})

    # -- CSRF ---------------------------------------------------------------------

    def _sign(self, family: str, nonce: str) -> str:
        return hmac.new(self._key, f"{family}\x00{nonce}".encode(), hashlib.sha256).hexdigest()[:32]

    def csrf_token(self, family: str) -> str:
        nonce = secrets.token_urlsafe(16)
        return f"{nonce}.{self._sign(family, nonce)}"

    def check_csrf(self, request: web.Request, family: str) -> None:
        """403 unless header and cookie carry the same token, signed for this session (unsafe methods only)."""
        if request.method in SAFE_METHODS:
            return
        header = request.headers.get(self.settings.csrf_header, "")
        cookie = request.cookies.get(self.settings.csrf_name, "")
        nonce, _, signature = header.partition(".")
        if not (
            header
            and hmac.compare_digest(header, cookie)
            and hmac.compare_digest(signature, self._sign(family, nonce))
        ):
            raise GatewayError(403, ErrorCode.CSRF_FAILED, f"Send the {self.settings.csrf_name} cookie's value in the {self.settings.csrf_header} header")

    # -- reading --------------------------------------------------------------------

    def access_token(self, request: web.Request) -> str | None:
        return (request.cookies.get(self.settings.access_name) or None) if self.settings.access_cookie else None

    def refresh_token(self, request: web.Request) -> str | None:
        return request.cookies.get(self.settings.refresh_name) or None

    def websocket_token(self, request: web.Request, origin_ok: Callable[[str], bool]) -> str | None:
        """The access cookie of a websocket handshake, a GET that cannot carry a CSRF header.

        Browsers send cookies with handshakes from other sites (cross-site websocket
        hijacking), so a handshake authenticated by a cookie must come from the
        gateway's own origin or an allowed one; clients without ``Origin`` are not browsers.
        """
        token = self.access_token(request)
        origin = request.headers.get("Origin")
        if token is not None and origin is not None and not origin_ok(origin):
            raise GatewayError(403, ErrorCode.ORIGIN_NOT_ALLOWED, "A websocket authenticated by a cookie must come from an allowed origin")
        return token

    # -- writing --------------------------------------------------------------------

    def _set(self, response: web.StreamResponse, name: str, value: str, path: str, *, http_only: bool, max_age: int) -> None:
        response.set_cookie(
            name, value, path=path, domain=self.settings.domain, max_age=max_age,
            secure=self.settings.secure, httponly=http_only, samesite=self.settings.same_site,
        )

    def set_session(self, response: web.StreamResponse, access: str, refresh: str | None, csrf: str, refresh_path: str) -> None:
        """Put the tokens and the CSRF token (from ``csrf_token``) into cookies."""
        s = self.settings
        if s.access_cookie:
            self._set(response, s.access_name, access, s.access_path, http_only=True, max_age=self._lifetime)
        if refresh is not None:
            self._set(response, s.refresh_name, refresh, s.refresh_path or refresh_path, http_only=True, max_age=self._lifetime)
        self._set(response, s.csrf_name, csrf, "/", http_only=False, max_age=self._lifetime)

    def clear(self, response: web.StreamResponse, refresh_path: str) -> None:
        s = self.settings
        self._set(response, s.access_name, "", s.access_path, http_only=True, max_age=0)
        self._set(response, s.refresh_name, "", s.refresh_path or refresh_path, http_only=True, max_age=0)
        self._set(response, s.csrf_name, "", "/", http_only=False, max_age=0)

    def strip(self, headers: CIMultiDict[str]) -> None:
        """Remove the gateway's cookies from the Cookie header an upstream receives."""
        kept = []
        for value in headers.popall("Cookie", []):
            pairs = [p.strip() for p in value.split(";")]
            kept += [p for p in pairs if p and p.split("=", 1)[0].strip() not in self.names]
        if kept:
            headers["Cookie"] = "; ".join(kept)

