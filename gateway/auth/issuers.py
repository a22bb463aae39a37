"""External issuers: bearer tokens of an identity provider (Keycloak, Auth0, Azure AD...).

Each issuer's JWKS is fetched once at start, kept for its ``max-age`` (clamped
to the configured bounds) and refreshed in the background. A token naming a
``kid`` the cache does not know triggers one re-fetch, at most once per
``kid_refetch_interval`` however many such tokens arrive, and concurrent
requests share that one fetch, so random ``kid``s cannot hammer the IdP. A
failed fetch keeps the last good key set: an IdP outage does not become a
gateway outage.

Lifecycle: ``Issuers.start()`` begins the background refreshers; a runtime
built by a hot reload starts its own on first use. A refresher holds its cache
only weakly, so it ends by itself once a reload has dropped the old runtime,
and every fetch uses its own short-lived HTTP session (fetches are minutes
apart), so nothing needs closing when a runtime is replaced.

The token decides nothing about its own verification: the issuer is chosen by
the route's allow-list and the ``iss`` claim, the algorithm must be in the
issuer's allow-list and fit the key's type, and ``jku``/``x5u``/``jwk``
headers are refused, never followed.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
import weakref
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Mapping

import aiohttp
import jwt
from jwt.algorithms import get_default_algorithms

import gateway.auth.jose as jose
from gateway.auth.keys import MIN_RSA_BITS
from gateway.auth.tokens import Claims, jwt_errors
from gateway.config import OWN_ISSUER, ExternalIssuer, GatewayConfig, Route
from gateway.errors import ErrorCode, GatewayError

__all__ = ["ExternalVerifier", "Issuers", "JwksCache", "RouteTrust", "claim_at", "parse_jwks"]

log = logging.getLogger("gateway.auth.issuers")

MAX_JWKS_BYTES = 512 * 1024
_MAX_AGE = re.compile(r"(?:^|,)\s*max-age\s*=\s*\"?(\d+)\"?", re.IGNORECASE)
# Which key a JWS algorithm needs (RFC 7518 §3.1, RFC 8037): key type and, for EC/OKP, curve.
_KEY_FOR_ALG = {
    **{alg: ("RSA", None) for alg in ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512")},
    "ES256": ("EC", "P-256"),
    "ES384": ("EC", "P-384"),
    "ES512": ("EC", "P-521"),
    "EdDSA": ("OKP", "Ed25519"),
}
# Claims that always come from the verified token itself.
_REGISTERED = ("iss", "sub", "aud", "exp", "iat", "nbf", "jti")


def _unauthorized(detail: str) -> GatewayError:
    return GatewayError.unauthorized(ErrorCode.TOKEN_NOT_VALID, detail)


def parse_jwks(body: bytes, algorithms: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """``kid -> {alg: public key}`` for every usable signing key; ValueError if there is none.

    Keys without a kid, symmetric keys, encryption keys, and keys whose type or
    ``alg`` fits none of the allowed algorithms are skipped.
    """
    data = json.loads(body.decode("utf-8"))
    if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
        raise ValueError("not a JWK set (no keys list)")
    keys: dict[str, dict[str, Any]] = {}
    for jwk in data["keys"]:
        if not isinstance(jwk, dict) or not isinstance(jwk.get("kid"), str) or jwk.get("use", "sig") != "sig":
            continue
        for alg in algorithms:
            kty, crv = _KEY_FOR_ALG[alg]
            if jwk.get("kty") != kty or (crv and jwk.get("crv") != crv) or jwk.get("alg", alg) != alg:
                continue
            try:
                key = get_default_algorithms()[alg].from_jwk(jwk)
            except (jwt.PyJWTError, ValueError, TypeError, KeyError):
                continue
            if kty == "RSA" and key.key_size < MIN_RSA_BITS:
                continue
            keys.setdefault(jwk["kid"], {})[alg] = key
    keys = {kid: algs for kid, algs in keys.items() if algs}
    if not keys:
        raise ValueError("the JWK set has no usable signing key")
    return keys


def _ttl(headers: Mapping[str, str], settings: ExternalIssuer) -> float:
    control = headers.get("Cache-Control", "")
    match = _MAX_AGE.search(control)
    if "no-store" in control.lower() or "no-cache" in control.lower():
        ttl = settings.jwks_min_ttl
    elif match:
        age = headers.get("Age", "0")
        ttl = int(match.group(1)) - (int(age) if age.isdigit() else 0)
    else:
        ttl = settings.jwks_default_ttl
    return min(max(ttl, settings.jwks_min_ttl), settings.jwks_max_ttl)


class JwksCache:
    """One issuer's key set: fetched, kept for its max-age, refreshed, and kept when the IdP is down."""

    def __init__(self, name: str, settings: ExternalIssuer) -> None:
        self.name = name
        self.settings = settings
        self.keys: Mapping[str, Mapping[str, Any]] = MappingProxyType({})
        self.fetches = 0  # attempts, for tests and metrics
        self._last_attempt = float("-inf")
        self._fetched_at = float("-inf")
        self._ttl = settings.jwks_default_ttl
        self._inflight: asyncio.Task[bool] | None = None
        self._refresher: asyncio.Task[None] | None = None

    async def key(self, kid: str, alg: str) -> Any:
        """The public key for ``kid`` and ``alg``; an unknown kid may re-fetch, rate-limited."""
        self.start()  # a runtime built by a reload starts its refresher here
        if kid not in self.keys:
            recent = time.monotonic() - self._last_attempt < self.settings.kid_refetch_interval
            if self._inflight is not None or not recent:
                await self.refresh()
        if not self.keys:
            raise GatewayError(
                503, ErrorCode.ISSUER_UNAVAILABLE, f"The keys of issuer {self.name} could not be fetched",
                headers={"Retry-After": str(max(1, int(self.settings.kid_refetch_interval)))},
            )
        by_alg = self.keys.get(kid)
        if by_alg is None:
            raise _unauthorized("Token is signed with an unknown key")
        if alg not in by_alg:
            raise _unauthorized("Token algorithm does not match its key")
        return by_alg[alg]

    async def refresh(self) -> bool:
        """Fetch now, or join the fetch already running; True if the key set is fresh."""
        return await asyncio.shield(self._start_fetch())

    def _start_fetch(self) -> "asyncio.Task[bool]":
        if self._inflight is None:
            self._inflight = asyncio.get_running_loop().create_task(self._fetch())
            self._inflight.add_done_callback(self._clear_inflight)
        return self._inflight

    def _clear_inflight(self, _task: "asyncio.Task[bool]") -> None:
        self._inflight = None

    async def _fetch(self) -> bool:
        self._last_attempt = time.monotonic()
        self.fetches += 1
        timeout = aiohttp.ClientTimeout(total=self.settings.fetch_timeout)
        try:
            async with aiohttp.ClientSession(timeout=timeout, cookie_jar=aiohttp.DummyCookieJar()) as session:
                async with session.get(self.settings.jwks_url, allow_redirects=False,
                                       headers={"Accept": "application/json"}) as resp:
                    if resp.status != 200:
                        raise ValueError(f"HTTP {resp.status}")
                    body = await resp.content.read(MAX_JWKS_BYTES + 1)
                    if len(body) > MAX_JWKS_BYTES:
                        raise ValueError("the JWK set is too large")
                    keys = parse_jwks(body, self.settings.algorithms)
                    ttl = _ttl(resp.headers, self.settings)
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError, ValueError, RecursionError) as exc:
            log.warning("issuer %s: JWKS fetch from %s failed (%s); keeping %d known keys",
                        self.name, self.settings.jwks_url, str(exc) or type(exc).__name__, len(self.keys))
            return False
        self.keys, self._ttl, self._fetched_at = MappingProxyType(keys), ttl, time.monotonic()
        return True

    def start(self) -> None:
        """Run the background refresher (idempotent)."""
        if self._refresher is None or self._refresher.done():
            self._refresher = asyncio.get_running_loop().create_task(_refresh_forever(weakref.ref(self)))
            _BACKGROUND.add(self._refresher)
            self._refresher.add_done_callback(_BACKGROUND.discard)

    async def close(self) -> None:
        for task in (self._refresher, self._inflight):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    def due_in(self) -> float:
        """Seconds until the key set is stale (0 if it was never fetched)."""
        return self._fetched_at + self._ttl - time.monotonic()

    def next_delay(self, ok: bool, failures: int) -> float:
        """The TTL when healthy; when not, a growing pause from jwks_min_ttl, capped at the TTL."""
        if ok:
            return self._ttl
        return min(self.settings.jwks_min_ttl * 2.0 ** min(failures - 1, 10), self._ttl)


# Strong references to running refreshers (the loop keeps tasks only weakly).
_BACKGROUND: set["asyncio.Task[None]"] = set()


async def _refresh_forever(ref: "weakref.ref[JwksCache]") -> None:
    """Refresh while the cache exists; it is held only weakly between rounds, so a dropped runtime ends this."""
    failures = 0
    while (cache := ref()) is not None:
        delay = cache.due_in()
        if delay <= 0:
            ok = await cache.refresh()
            failures = 0 if ok else failures + 1
            delay = cache.next_delay(ok, failures)
        del cache
        await asyncio.sleep(delay)


class ExternalVerifier:
    """Verifies one issuer's tokens and maps their claims to the names routes use."""

    def __init__(self, name: str, settings: ExternalIssuer) -> None:
        self.name = name
        self.settings = settings
        self.jwks = JwksCache(name, settings)
        audience = settings.audience
        self._audience = [audience] if isinstance(audience, str) else list(audience)

    async def verify(self, token: str) -> Claims:
        try:
            header = jose.read_header(token)
        except ValueError as exc:
            raise _unauthorized(str(exc)) from None
        alg = header["alg"]
        if alg not in self.settings.algorithms:
            raise _unauthorized("Token algorithm is not accepted for this issuer")
        key = await self.jwks.key(header["kid"], alg)
        with jwt_errors():
            claims = jwt.decode(
                token, key, algorithms=[alg], audience=self._audience, issuer=self.settings.issuer,
                leeway=self.settings.leeway, options={"require": ["exp", "iss", "aud", "sub"]},
            )
        try:
            jose.check_payload(token, claims)
        except ValueError as exc:
            raise _unauthorized(str(exc)) from None
        start = claims.get("iat", time.time())
        if claims["exp"] - start > self.settings.max_token_lifetime + self.settings.leeway:
            raise _unauthorized("Token lifetime exceeds what this issuer is trusted for")
        return self.map_claims(claims)

    def map_claims(self, claims: Mapping[str, Any]) -> Claims:
        """Registered claims as they are, plus the configured mapping; nothing else passes."""
        out = {name: claims[name] for name in _REGISTERED if name in claims}
        for target, source in self.settings.claims.items():
            value = claim_at(claims, source)
            if value is not None:
                out[target] = value
        if not isinstance(out.get("sub"), str) or not out["sub"]:
            raise _unauthorized("Token has no usable subject")
        out["sub"] = self.settings.prefix_for(self.name) + out["sub"]  # idp:alice is never the local alice
        return out


def claim_at(claims: Mapping[str, Any], source: str) -> Any:
    """A claim by dotted path (``realm_access.roles``), or by exact name when ``source`` is a URL.

    A top-level claim literally named ``realm_access.roles`` is never read for
    the path ``realm_access.roles``: the token's author could shadow the nested
    value with it. Namespaced claims (``https://example.com/roles``) are URLs
    and are read by their exact name.
    """
    if "://" in source or "." not in source:
        return claims.get(source)
    node: Any = claims
    for part in source.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


@dataclass(frozen=True, slots=True)
class RouteTrust:
    """Whose tokens a route accepts: the gateway's own, and external issuers keyed by ``iss``."""

    own: bool
    external: Mapping[str, ExternalVerifier]


class Issuers:
    """Every configured external issuer, and which of them each route trusts."""

    def __init__(self, config: GatewayConfig) -> None:
        self.by_name = {name: ExternalVerifier(name, s) for name, s in config.external_issuers.items()}
        self._trust = {route.name: self._route_trust(route) for route in config.routes}

    def _route_trust(self, route: Route) -> RouteTrust:
        external = {self.by_name[n].settings.issuer: self.by_name[n] for n in route.issuers if n != OWN_ISSUER}
        return RouteTrust(OWN_ISSUER in route.issuers, MappingProxyType(external))

    def for_route(self, route: Route) -> RouteTrust:
        return self._trust[route.name]

    async def start(self) -> None:
        """Begin fetching every issuer's keys in the background; serving does not wait for the IdPs."""
        for verifier in self.by_name.values():
            verifier.jwks.start()

    async def close(self) -> None:
        for verifier in self.by_name.values():
            await verifier.jwks.close()
