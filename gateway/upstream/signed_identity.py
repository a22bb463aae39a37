"""Signed identity for upstreams: a short-lived JWT carrying the caller's verified claims.

Plain identity headers are only as safe as the network around the upstream;
this header is safe anywhere, because the upstream checks the gateway's
signature with the public JWKS and the audience (its own URL), and the token
dies within a minute. The header is stripped from every client request, on
every route, before the gateway sets it.

Signing costs a little (RS256 more than ES256/EdDSA), so a token is reused for
the same caller token and route while more than half of its life remains.
"""
from __future__ import annotations

import math
import secrets
import time
from typing import Any, Mapping

import jwt

from gateway.auth.keys import KeyRing
from gateway.config import Route
from gateway.config.tokens import TOKEN_CLAIMS
from gateway.ttl import TTLMap

__all__ = ["DEFAULT_HEADER", "IdentitySigner", "TOKEN_TYPE"]

DEFAULT_HEADER = "X-Gateway-Identity"
TOKEN_TYPE = "identity"
CACHE_SIZE = 10_000


class IdentitySigner:
    def __init__(self, keys: KeyRing, issuer: str) -> None:
        self.keys = keys
        self.issuer = issuer
        self._cache: TTLMap[tuple[Any, ...], str] = TTLMap(CACHE_SIZE)  # reused until half its life is gone

    def token_for(self, route: Route, claims: Mapping[str, Any]) -> str:
        """The identity JWT for ``route``'s upstream, minted or reused."""
        settings = route.identity_jwt
        assert settings is not None
        now = time.time()
        cache_key = (route.name, claims.get("iss"), claims.get("jti"), claims.get("sub"), claims.get("exp"))
        cached = self._cache.get(cache_key, now) if claims.get("jti") is not None else None
        if cached is not None:
            return cached
        token, exp = self._mint(route, claims, now)
        if claims.get("jti") is not None:
            self._cache.put(cache_key, token, (now + exp) / 2)
        return token

    def _mint(self, route: Route, claims: Mapping[str, Any], now: float) -> tuple[str, float]:
        settings = route.identity_jwt
        assert settings is not None
        exp = math.ceil(now + settings.lifetime)  # never shorter than configured
        if isinstance(claims.get("exp"), (int, float)):
            exp = min(exp, int(claims["exp"]))  # never outlives the caller's own token
        payload = {k: v for k, v in claims.items() if k not in TOKEN_CLAIMS}
        payload.update(
            idp=claims.get("iss"),  # who authenticated the caller: the gateway, or an external issuer
            iss=self.issuer,
            aud=settings.audience or route.upstream,
            iat=int(now),
            nbf=int(now),
            exp=exp,
            jti=secrets.token_hex(16),
            token_type=TOKEN_TYPE,
        )
        key = self.keys.active
        headers = {"kid": key.kid, "typ": "JWT"}
        return jwt.encode(payload, key.private, algorithm=key.algorithm, headers=headers), exp
