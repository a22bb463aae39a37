"""The provider's JWTs the gateway accepts: ID tokens (OIDC Core §3.1.3.7) and logout tokens
(OIDC Back-Channel Logout 1.0 §2.6), each checked top to bottom in one function.

The token decides nothing about its own verification: the algorithm must be in
the provider's allow-list (asymmetric only, so ``none`` and HS256 keyed with
the public key never get near a key), the key comes from the provider's JWKS
by ``kid``, ``iss`` must be exactly the discovered issuer (mix-up defence),
``aud`` must contain the client id. Every failure is a ``GatewayError`` whose
detail names the check, never the token.
"""
from __future__ import annotations

import hmac
import time
from typing import Any, Mapping

import jwt

import gateway.auth.jose as jose
from gateway.auth.oidc import ProviderClient, printable
from gateway.auth.tokens import Claims, jwt_errors
from gateway.errors import ErrorCode, GatewayError

__all__ = ["BACKCHANNEL_EVENT", "validate_id_token", "validate_logout_token"]

BACKCHANNEL_EVENT = "http://schemas.openid.net/event/backchannel-logout"
LOGOUT_TOKEN_MAX_AGE = 300  # seconds: a logout token older than this is stale (its jti is remembered this long)


def _refused(detail: str) -> GatewayError:
    return GatewayError.unauthorized(ErrorCode.ID_TOKEN_INVALID, detail, token_presented=False)


def _algorithm_refusal(kind: str, alg: str, client: ProviderClient) -> str:
    """Why ``alg`` is refused, and what to change: an HS* token is signed with the client secret (the provider
    was told to, per client), which anyone holding that secret could forge, so it is never accepted."""
    shown, allowed = printable(alg, 32), "/".join(client.settings.algorithms)
    if alg.upper().startswith("HS"):
        return (f"{kind} signed with {shown}; this provider's tokens must use an asymmetric algorithm ({allowed}) "
                "from its JWKS: set the client's ID token signature algorithm (id_token_signed_response_alg) "
                "at the provider to RS256")
    if alg.lower() == "none":
        return f"{kind} is not signed (alg none); this provider's tokens must be signed with {allowed} from its JWKS"
    return (f"{kind} signed with {shown}, which is not among this provider's algorithms ({allowed}); add it to "
            f"oidc.providers.{client.name}.algorithms if the provider really signs with it")


async def _verified(client: ProviderClient, token: object, required: list[str],
                    kind: str = "ID token") -> tuple[dict[str, Any], Claims]:
    """Header and claims of a provider JWT whose signature, ``iss``, ``aud`` and dates hold."""
    try:
        header = jose.read_header(token, require_kid=False)  # shape, forbidden jku/x5u/jwk/crit/b64, nested tokens, alg
    except ValueError as exc:
        raise _refused(str(exc)) from None
    assert isinstance(token, str)
    alg = header["alg"]
    if alg not in client.settings.algorithms:  # before any key: `none`, HS256 and friends end here
        raise _refused(_algorithm_refusal(kind, alg, client))
    if not isinstance(header.get("kid"), str):  # checked after alg: an HS256 token has no kid, and alg is the reason
        raise _refused("Token header needs alg and kid")
    key = await client.key(header["kid"], alg)  # an unknown kid re-fetches the JWKS once (rotation)
    metadata = await client.metadata()
    with jwt_errors():
        claims = jwt.decode(
            token, key, algorithms=[alg], audience=client.settings.client_id, issuer=metadata.issuer,
            leeway=client.settings.leeway, options={"require": required, "verify_iat": True},
        )
    try:
        jose.check_payload(token, claims)  # no duplicate members, real numbers as dates
    except ValueError as exc:
        raise _refused(str(exc)) from None
    return header, claims


def _audience_checks(claims: Mapping[str, Any], client_id: str) -> None:
    """``azp`` (OIDC Core §3.1.3.7 steps 4-5): required with several audiences, and then the client itself."""
    audience = claims["aud"]
    several = isinstance(audience, list) and len(audience) > 1
    if several and "azp" not in claims:
        raise _refused("The token names several audiences but no authorized party (azp)")
    if "azp" in claims and claims["azp"] != client_id:
        raise _refused("The token was issued to another client (azp)")


def _age_check(claims: Mapping[str, Any], max_age: float, leeway: float) -> None:
    if claims["iat"] < time.time() - max_age - leeway:
        raise _refused("The token was issued too long ago")


async def validate_id_token(client: ProviderClient, token: object, nonce: str) -> Claims:
    """The claims of the ID token of the sign-in that sent ``nonce``; 401 ``id_token_invalid`` otherwise."""
    _, claims = await _verified(client, token, ["iss", "sub", "aud", "exp", "iat"])
    _audience_checks(claims, client.settings.client_id)
    received = claims.get("nonce")
    if not isinstance(received, str) or not hmac.compare_digest(received.encode(), nonce.encode()):
        raise _refused("The token's nonce is not the one of this sign-in")
    _age_check(claims, client.settings.max_id_token_age, client.settings.leeway)
    if not isinstance(claims["sub"], str) or not claims["sub"] or len(claims["sub"]) > 255:
        raise _refused("The token has no usable subject")
    return claims


async def validate_logout_token(client: ProviderClient, token: object) -> Claims:
    """A logout token's claims (Back-Channel Logout 1.0 §2.6); replay of its ``jti`` is the caller's check."""
    header, claims = await _verified(client, token, ["iss", "aud", "iat", "jti"], "Logout token")
    typ = str(header.get("typ", "logout+jwt")).lower().removeprefix("application/")
    if typ != "logout+jwt":
        raise _refused("A logout token's typ is logout+jwt")
    _audience_checks(claims, client.settings.client_id)
    events = claims.get("events")
    if not isinstance(events, dict) or not isinstance(events.get(BACKCHANNEL_EVENT), dict):
        raise _refused("The token is not a back-channel logout event")
    if "nonce" in claims:
        raise _refused("A logout token must not carry a nonce")
    sid, sub = claims.get("sid"), claims.get("sub")
    if not (isinstance(sid, str) and sid) and not (isinstance(sub, str) and sub):
        raise _refused("A logout token names a sid or a sub")
    if not isinstance(claims["jti"], str) or not claims["jti"]:
        raise _refused("A logout token needs a jti")
    _age_check(claims, LOGOUT_TOKEN_MAX_AGE, client.settings.leeway)
    return claims
