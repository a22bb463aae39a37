"""Who is calling: the bearer token of a request, verified and checked against revocation.

This is the one place a proxied request's credentials are validated; the
gateway's own endpoints use it too.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Literal, overload

from aiohttp import web

import gateway.auth.jose as jose
from gateway.auth.issuers import RouteTrust
from gateway.auth.tokens import Claims, TokenService
from gateway.errors import ErrorCode, GatewayError
from gateway.stores import RevocationStore

if TYPE_CHECKING:
    from gateway.auth.cookies import CookieMode

__all__ = ["OriginRule", "authenticate", "bearer_token"]



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
        raise GatewayError.unauthorized(ErrorCode.TOKEN_NOT_VALID, "The bearer token is empty")
    return token


async def verify_access(token: str, tokens: TokenService, store: RevocationStore) -> Claims:
    """Claims of a valid, unrevoked access token."""
    claims = tokens.verify(token, "access")
    if await store.is_revoked(claims["fid"], claims["jti"]):
        raise GatewayError.unauthorized(ErrorCode.TOKEN_REVOKED, "Token has been revoked")
    return claims


async def verify_trusted(token: str, trust: RouteTrust, tokens: TokenService, store: RevocationStore) -> Claims:
    """Claims of a token from an issuer the route trusts, chosen by its (not yet verified) ``iss``.

    The ``iss`` only picks whose keys to try; those keys, that issuer's
    algorithms and audience then decide, so a forged ``iss`` gains nothing.
    """
    try:
        issuer = jose.peek_claims(token).get("iss")
    except ValueError as exc:
        raise GatewayError.unauthorized(ErrorCode.TOKEN_NOT_VALID, str(exc)) from None
    if trust.own and issuer == tokens.settings.issuer:
        return await verify_access(token, tokens, store)
    verifier = trust.external.get(issuer) if isinstance(issuer, str) else None
    if verifier is None:
        raise GatewayError.unauthorized(ErrorCode.TOKEN_NOT_VALID, "Tokens of this issuer are not accepted here")
    return await verifier.verify(token)


OriginRule = Callable[[str], bool]


@overload
async def authenticate(
    request: web.Request, tokens: TokenService, store: RevocationStore, *, required: Literal[True],
    trust: RouteTrust | None = None, cookies: "CookieMode | None" = None, handshake: tuple[str | None, OriginRule] | None = None,
) -> Claims: ...
@overload
async def authenticate(
    request: web.Request, tokens: TokenService, store: RevocationStore, *, required: bool,
    trust: RouteTrust | None = None, cookies: "CookieMode | None" = None, handshake: tuple[str | None, OriginRule] | None = None,
) -> Claims | None: ...
async def authenticate(
    request: web.Request,
    tokens: TokenService,
    store: RevocationStore,
    *,
    required: bool,
    trust: RouteTrust | None = None,
    cookies: "CookieMode | None" = None,
    handshake: tuple[str | None, OriginRule] | None = None,
) -> Claims | None:
    """The verified claims of the caller, for HTTP requests and websocket handshakes alike; None only when no
    token was sent and none is required.

    The bearer header comes first; for a websocket ``handshake`` it is the token the handshake carried
    (header, query or subprotocol, taken out by ``upstream.websocket.read_handshake``) with the rule for the
    origins whose pages may use the access cookie. ``trust`` names the issuers a route accepts; without it
    only the gateway's own access tokens pass. In cookie mode the access cookie is the fallback: it only
    ever holds the gateway's own token, and since a browser sends it on its own, a state-changing request
    it authenticates must also pass the CSRF check, and a handshake (a GET that cannot carry the CSRF
    header) must come from an allowed origin.
    """
    token = handshake[0] if handshake is not None else bearer_token(request)
    if token is not None:
        return await verify_for_route(token, tokens, store, trust)
    if cookies is not None and (trust is None or trust.own):
        cookie = cookies.access_token(request) if handshake is None else cookies.websocket_token(request, handshake[1])
        if cookie is not None:
            claims = await verify_access(cookie, tokens, store)
            if handshake is None:
                cookies.check_csrf(request, claims["fid"])
            return claims
    if required:
        raise GatewayError.unauthorized(
            ErrorCode.AUTHENTICATION_REQUIRED, "Authentication credentials were not provided", token_presented=False
        )
    return None


async def verify_for_route(token: str, tokens: TokenService, store: RevocationStore, trust: RouteTrust | None) -> Claims:
    """Claims of a bearer token on a route: the gateway's own access token, or one of the route's issuers'."""
    if trust is not None and (trust.external or not trust.own):
        return await verify_trusted(token, trust, tokens, store)
    return await verify_access(token, tokens, store)
