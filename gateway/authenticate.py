"""Who is calling: the bearer token of a request, verified and checked against revocation.

This is the one place a proxied request's credentials are validated; the
gateway's own endpoints use it too.
"""
from __future__ import annotations

from aiohttp import web

from .errors import GatewayError
from .stores import Store
from .tokens import Claims, TokenService

__all__ = ["SUBJECT", "authenticate", "bearer_token"]

# The verified caller, for the access log (set by dispatch and by the token endpoints).
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


async def authenticate(request: web.Request, tokens: TokenService, store: Store, *, required: bool) -> Claims | None:
    """The verified claims of the caller; None only when no token was sent and none is required."""
    token = bearer_token(request)
    if token is None:
        if required:
            raise GatewayError.unauthorized(
                "authentication_required", "Authentication credentials were not provided", token_presented=False
            )
        return None
    return await verify_access(token, tokens, store)
