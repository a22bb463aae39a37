"""Minting and verifying the gateway's tokens.

``TokenService.verify`` reads top to bottom like the checks it makes: shape,
header, key, signature and registered claims, then the token's type. Revocation
lives with the stores; this module needs no I/O.
"""
from __future__ import annotations

import secrets
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator, Mapping

import jwt

import gateway.auth.jose as jose
from gateway.auth.keys import KeyRing, SigningKey
from gateway.config import Tokens
from gateway.errors import ErrorCode, GatewayError
from gateway.ttl import TTLMap

__all__ = ["Claims", "TokenPair", "TokenService", "jwt_errors"]

Claims = dict[str, Any]

MAX_TOKEN_LENGTH = jose.MAX_TOKEN_LENGTH
_REQUIRED = ["exp", "iat", "nbf", "iss", "aud", "sub", "jti"]


@dataclass(frozen=True, slots=True)
class TokenPair:
    access: str
    refresh: str
    access_claims: Claims
    refresh_claims: Claims

    @property
    def expires_in(self) -> int:
        return int(self.access_claims["exp"] - self.access_claims["iat"])


def _invalid(detail: str) -> GatewayError:
    return GatewayError.unauthorized(ErrorCode.TOKEN_NOT_VALID, detail)


class TokenService:
    """Mints access/refresh pairs and verifies them against the key ring."""

    def __init__(self, settings: Tokens, keys: KeyRing) -> None:
        self.settings = settings
        self.keys = keys
        self._verified = VerifiedCache()

    # -- minting -----------------------------------------------------------------

    def _mint(self, token_type: str, lifetime: float, subject: str, family: str, extra: Mapping[str, Any]) -> tuple[str, Claims]:
        now = int(time.time())
        claims: Claims = dict(extra)
        claims.update(
            iss=self.settings.issuer,
            aud=self.settings.audience,
            sub=subject,
            iat=now,
            nbf=now,
            exp=now + int(lifetime),
            jti=secrets.token_hex(16),
            token_type=token_type,
            fid=family,
        )
        key = self.keys.active
        token = jwt.encode(claims, key.private, algorithm=key.algorithm, headers={"kid": key.kid, "typ": "JWT"})
        return token, claims

    def mint_access(self, subject: str, user_claims: Mapping[str, Any], family: str) -> tuple[str, Claims]:
        return self._mint("access", self.settings.access_lifetime, subject, family, user_claims)

    def mint_pair(
        self, subject: str, user_claims: Mapping[str, Any], family: str | None = None, refresh_extra: Mapping[str, Any] | None = None
    ) -> TokenPair:
        """A fresh pair; ``family`` ties every refresh descended from one login together.

        ``refresh_extra`` rides in the (signed) refresh token: the claims of a user whose source cannot re-read users.
        """
        family = family or secrets.token_hex(16)
        access, access_claims = self.mint_access(subject, user_claims, family)
        refresh, refresh_claims = self._mint("refresh", self.settings.refresh_lifetime, subject, family, refresh_extra or {})
        return TokenPair(access, refresh, access_claims, refresh_claims)

    # -- verifying ---------------------------------------------------------------

    def verify(self, token: object, token_type: str | None = "access", *, check_expiry: bool = True) -> Claims:
        """The token's claims if it is well formed, signed by a known key, current and of ``token_type``.

        ``token_type=None`` accepts either of the gateway's types (for the verify endpoint).
        Access tokens that passed once are remembered until they expire (``VerifiedCache``);
        revocation is not part of this check and is asked of the store every time.
        """
        if token_type == "access" and check_expiry:
            cached = self._verified.get(token)
            if cached is not None:
                return cached
            claims = self._verify(token, token_type, check_expiry)
            self._verified.put(str(token), claims, int(claims["exp"]) + self.settings.leeway)  # PyJWT compares int(exp)
            return claims
        return self._verify(token, token_type, check_expiry)

    def _verify(self, token: object, token_type: str | None, check_expiry: bool) -> Claims:
        key = self._key_for(token)
        assert isinstance(token, str)  # _key_for refused anything else as malformed
        claims = self._decode(token, key, check_expiry)
        accepted = ("access", "refresh") if token_type is None else (token_type,)
        if claims.get("token_type") not in accepted:
            raise _invalid(f"Token has wrong type (expected {' or '.join(accepted)})")
        if not isinstance(claims.get("fid"), str):
            raise _invalid("Token has no family")
        if claims["exp"] - claims["iat"] > self._max_lifetime(claims["token_type"]):
            raise _invalid("Token lifetime exceeds what the gateway issues")
        return claims

    def _max_lifetime(self, token_type: str) -> float:
        lifetime = self.settings.access_lifetime if token_type == "access" else self.settings.refresh_lifetime
        return int(lifetime) + self.settings.leeway

    def _key_for(self, token: object) -> SigningKey:
        try:
            header = jose.read_header(token)
        except ValueError as exc:
            raise _invalid(str(exc)) from None
        key = self.keys.get(header.get("kid"))
        if key is None:
            raise _invalid("Token is signed with an unknown key")
        if header.get("alg") != key.algorithm:
            raise _invalid("Token algorithm does not match its key")
        return key

    def _decode(self, token: str, key: SigningKey, check_expiry: bool) -> Claims:
        claims = self._decode_signed(token, key, check_expiry)
        try:
            jose.check_payload(token, claims)
        except ValueError as exc:
            raise _invalid(str(exc)) from None
        return claims

    def _decode_signed(self, token: str, key: SigningKey, check_expiry: bool) -> Claims:
        with jwt_errors():
            return jwt.decode(
                token,
                key.public,
                algorithms=[key.algorithm],
                audience=self.settings.audience,
                issuer=self.settings.issuer,
                leeway=self.settings.leeway,
                options={"require": _REQUIRED, "verify_exp": check_expiry},
            )


class VerifiedCache:
    """Claims of access tokens that passed every check, by token string, until they expire.

    A hit skips parsing and the signature check (a fifth of a proxied request's
    cost); nothing else changes: the same string was fully verified before, the
    deadline is its own ``exp`` plus leeway, and a reload builds a new cache, so
    a retired key's tokens are checked again. Bounded: when full, the oldest entry
    goes (``gateway.ttl``), which costs that token one more verification.
    """

    def __init__(self, max_entries: int = 10_000) -> None:
        self._entries: TTLMap[str, Claims] = TTLMap(max_entries)

    def get(self, token: object) -> Claims | None:
        if not isinstance(token, str):
            return None
        return self._entries.get(token, time.time())  # PyJWT: expired once now >= exp + leeway

    def put(self, token: str, claims: Claims, deadline: float) -> None:
        self._entries.put(token, claims, deadline)


@contextmanager
def jwt_errors() -> Iterator[None]:
    """PyJWT's exceptions as the gateway's 401s; anything odd in a token is ``token_not_valid``."""
    try:
        yield
    except jwt.ExpiredSignatureError:
        raise GatewayError.unauthorized(ErrorCode.TOKEN_EXPIRED, "Token has expired") from None
    except jwt.ImmatureSignatureError:
        raise _invalid("Token is not yet valid") from None
    except jwt.InvalidAudienceError:
        raise _invalid("Token has the wrong audience") from None
    except jwt.InvalidIssuerError:
        raise _invalid("Token has the wrong issuer") from None
    except jwt.InvalidSignatureError:
        raise _invalid("Token signature is not valid") from None
    except jwt.MissingRequiredClaimError as exc:
        raise _invalid(f"Token is missing the {exc.claim} claim") from None
    except (jwt.PyJWTError, ValueError, TypeError, OverflowError, RecursionError):
        raise _invalid("Token is invalid") from None
