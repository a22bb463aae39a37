"""``routes[].rate_limit``: requests per client per route, shared by every instance through the store.

GCRA (one atomic script on Redis, on Redis's clock; in-process with the memory
store). An answer past the limit is 429 ``rate_limited`` with ``Retry-After``;
every answer of a limited route carries the IETF httpapi draft's
``RateLimit-Policy: "<route>";q=<requests>;w=<seconds>`` and
``RateLimit: "<route>";r=<remaining>;t=<seconds until full>``. With the store
unavailable the route follows ``store.failure_mode``: 503 ``store_unavailable``
(``fail_closed``) or served without the limit (``fail_open``).
"""
from __future__ import annotations

import hashlib
import math
import re
from typing import Any, Mapping

from aiohttp import web

from gateway.config import GatewayConfig, Route
from gateway.context import state
from gateway.errors import ErrorCode, GatewayError
from gateway.forwarded import client
from gateway.stores import LimitStore, StoreUnavailable

__all__ = ["add_headers", "enforce"]

_HEADERS = web.RequestKey("rate_limit_headers", dict)
_UNSAFE = re.compile(r"[^A-Za-z0-9_.:-]")


def _who(request: web.Request, route: Route, claims: Mapping[str, Any] | None) -> str:
    assert route.rate_limit is not None
    kind, _, name = route.rate_limit.key.partition(":")
    value: Any = None
    if kind == "sub" and claims is not None:
        value = claims.get("sub")
    elif kind == "claim" and claims is not None:
        value = claims.get(name)
    elif kind == "header":
        value = request.headers.get(name)
    if value is None or value == "":
        return "ip:" + client(request).address  # no such identity: the client address
    return f"{kind}:{value}"


async def enforce(request: web.Request, route: Route, claims: Mapping[str, Any] | None, store: LimitStore,
                  config: GatewayConfig) -> None:
    """Count this request against the route's limit; raise 429 past it."""
    limit = route.rate_limit
    if limit is None:
        return
    who = hashlib.sha256(_who(request, route, claims).encode()).hexdigest()[:32]
    try:
        decision = await store.rate_limit(f"{route.name}:{who}", limit.per / limit.requests, limit.capacity)
    except StoreUnavailable:
        if config.store.failure_mode == "fail_open":
            return
        raise
    name = _UNSAFE.sub("_", route.name)
    headers = {
        "RateLimit-Policy": f'"{name}";q={limit.requests};w={max(1, math.ceil(limit.per))}',
        "RateLimit": f'"{name}";r={decision.remaining};t={math.ceil(decision.reset_after)}',
    }
    request[_HEADERS] = headers
    if not decision.allowed:
        retry = str(max(1, math.ceil(decision.retry_after)))
        raise GatewayError(429, ErrorCode.RATE_LIMITED, "Too many requests; slow down", headers={**headers, "Retry-After": retry})


def add_headers(request: web.Request, response: web.StreamResponse) -> None:
    """The limited route's ``RateLimit``/``RateLimit-Policy`` on any answer (``middleware.answer_headers``)."""
    headers = state(request).get(_HEADERS)
    if headers:
        for key, value in headers.items():
            response.headers.setdefault(key, value)
