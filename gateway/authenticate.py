"""Who is calling: the bearer token of a request, verified and checked against revocation.

This is the one place a proxied request's credentials are validated; the
gateway's own endpoints use it too.
"""
from __future__ import annotations

import logging
import time

from aiohttp import web

from .errors import GatewayError
from .stores import Store, StoreUnavailable
from .tokens import Claims, TokenService

__all__ = ["REVOCATION_SKIPPED", "SUBJECT", "authenticate", "bearer_token"]

log = logging.getLogger("gateway.store")
# Set on a request served under fail_open without its revocation check.
REVOCATION_SKIPPED = web.RequestKey("revocation_skipped", bool)
# The verified caller, for the access log (set here and by the token endpoints).
SUBJECT = web.RequestKey("sub", str)


def bearer_token(request: web.Request) -> str | None:
    """The token of an ``Authorization: Bearer`` header (RFC 6750 §2.1), or None if there is none."""
    values = request.headers.getall("Authorization", [])
    if not values:
        return None
    if len(values) > 1:
        raise GatewayError.bad_request("More than one Authorization header")
    scheme, _, token = values[0].strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    token = token.strip()
    if not token:
        raise GatewayError.unauthorized("token_not_valid", "The bearer token is empty")
    return token


async def verify_access(token: str, tokens: TokenService, store: Store) -> Claims:
    """Claims of a valid, unrevoked access token."""
    claims = tokens.verify(token, "access")
    if await store.is_revoked(claims["fid"], claims["jti"]):
        raise GatewayError.unauthorized("token_revoked", "Token has been revoked")
    return claims


def _identified(request: web.Request, claims: Claims) -> Claims:
    request[SUBJECT] = str(claims.get("sub"))
    return claims


async def authenticate(
    request: web.Request, tokens: TokenService, store: Store, *, required: bool, fail_open: bool = False
) -> Claims | None:
    """The verified claims of the caller; None only when no token was sent and none is required.

    With ``fail_open`` an unreachable store does not refuse a correctly signed,
    unexpired token: the request goes on without its revocation check, loudly.
    """
    token = bearer_token(request)
    if token is None:
        if required:
            raise GatewayError.unauthorized(
                "authentication_required", "Authentication credentials were not provided", token_presented=False
            )
        return None
    if not fail_open:
        return _identified(request, await verify_access(token, tokens, store))
    claims = tokens.verify(token, "access")
    try:
        revoked = await store.is_revoked(claims["fid"], claims["jti"])
    except StoreUnavailable:
        request[REVOCATION_SKIPPED] = True
        _fail_open_warning.emit()
        return _identified(request, claims)
    if revoked:
        raise GatewayError.unauthorized("token_revoked", "Token has been revoked")
    return _identified(request, claims)


class _RateLimitedWarning:
    """One WARNING per second at most: loud enough to page on, not a log flood during an outage."""

    def __init__(self, interval: float = 1.0) -> None:
        self.interval = interval
        self.last = float("-inf")
        self.suppressed = 0

    def emit(self) -> None:
        now = time.monotonic()
        if now - self.last < self.interval:
            self.suppressed += 1
            return
        log.warning(
            "store unavailable: serving requests on the token signature alone, revoked tokens are NOT refused "
            "(store.failure_mode fail_open; %d more such requests since the last warning)",
            self.suppressed,
        )
        self.last, self.suppressed = now, 0


_fail_open_warning = _RateLimitedWarning()
