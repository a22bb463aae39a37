"""A decision's answer: the identity headers the upstream gets, and how long the front proxy may reuse it.

An allowed decision is a 200 with an empty body carrying only what the
gateway injects: the route's claim headers (those whose claim the token has)
and its signed identity header. Never the client's own headers, never
forwarding headers (the front proxy sets its own), never ``X-Request-Id``
as an identity header (each request has its own; the answer's is for
correlating logs only).

Lifetime ``N`` (seconds) of the front proxy's cache (the gateway's own admission
cache follows revocations and has its own bound, gateway/auth/admission_cache.py):
``min(decision.max_age, store.revocation_cache, exp - now,
identity_jwt.lifetime / 2)``, rounded down, and 0 when

- the route has a ``rate_limit`` (every request must be counted, so decided);
- the caller is known by an access cookie on an unsafe method (the CSRF check
  reads a header the proxy's cache key does not hold).

``N > 0``: ``Cache-Control: private, max-age=N`` and ``X-Accel-Expires: N``
(nginx's own, which its cache prefers). ``N = 0`` and every refusal:
``Cache-Control: no-store`` and ``X-Accel-Expires: 0``: denials are never cached.
"""
from __future__ import annotations

import math
import time
from typing import Any, Iterable, Mapping

from aiohttp import web

from gateway.config import GatewayConfig, Route

__all__ = ["allow", "deny", "lifetime"]


def lifetime(config: GatewayConfig, route: Route, claims: Mapping[str, Any] | None, cacheable: bool,
             now: float | None = None) -> int:
    """Whole seconds an allowed decision may be reused (see the module docstring)."""
    settings = config.decision
    if settings is None or not cacheable or route.rate_limit is not None:
        return 0
    bound = min(settings.max_age, config.store.revocation_cache)
    if claims is not None:
        exp = claims.get("exp")
        if isinstance(exp, (int, float)):
            bound = min(bound, exp - (time.time() if now is None else now))
        step_up = route.require.auth_deadline(claims)  # a cached decision never outlives auth_time + max_auth_age
        if step_up is not None:
            bound = min(bound, step_up - (time.time() if now is None else now))
    if route.identity_jwt is not None:
        bound = min(bound, route.identity_jwt.lifetime / 2)  # the signer reuses a token while half its life remains
    return max(0, math.floor(bound))


def _cache_headers(seconds: int) -> dict[str, str]:
    if seconds <= 0:
        return {"Cache-Control": "no-store", "X-Accel-Expires": "0"}
    return {"Cache-Control": f"private, max-age={seconds}", "X-Accel-Expires": str(seconds)}


def allow(route: Route, headers: Mapping[str, str], seconds: int, padding: Iterable[str] = ()) -> web.Response:
    """The 200 of an allowed decision: the gateway-injected identity headers taken from ``headers`` (the admission's);
    each name in ``padding`` it lacks is sent empty (``front.Front.padding``)."""
    answer = {name: headers[name] for name in route.headers if name in headers}
    if route.identity_jwt is not None and route.identity_jwt.header in headers:
        answer[route.identity_jwt.header] = headers[route.identity_jwt.header]
    if padding:
        injected = {name.lower() for name in answer}
        answer.update({name: "" for name in padding if name.lower() not in injected})
    answer.update(_cache_headers(seconds))
    return web.Response(status=200, headers=answer)


def deny(response: web.StreamResponse) -> web.StreamResponse:
    """A refusal as proxy mode words it, marked uncacheable."""
    response.headers.update(_cache_headers(0))
    return response
