"""Admission of each request: connection refusals, head size and concurrent requests per client.

Runs inside the access-log middleware, so every refusal here is logged and
counted like any other answer. The connection-level part (caps, head timeout)
is in ``connections``; this is what can only be checked with a parsed request.
"""
from __future__ import annotations

from collections import Counter
from typing import Awaitable, Callable

from aiohttp import web

from gateway.server.connections import ConnectionGuard
from gateway.errors import GatewayError, error_response
from gateway.config.limits import Limits
from gateway.auth.throttle import _ip_bucket
from gateway.upstream.slots import UpstreamSlots

__all__ = ["CONNECTION_GUARD", "ClientRequests", "admission", "client_address", "head_size", "install", "saturation"]

CONNECTION_GUARD = web.AppKey("connection_guard", ConnectionGuard)
_CLIENT_REQUESTS = web.AppKey("client_requests", "ClientRequests")
_TRUST_FORWARDED = web.AppKey("admission_trust_forwarded", Callable[[], bool])

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ClientRequests:
    """Requests in progress per client address."""

    def __init__(self) -> None:
        self.active: Counter[str] = Counter()

    def enter(self, client: str, limit: int) -> bool:
        if self.active[client] >= limit:
            return False
        self.active[client] += 1
        return True

    def leave(self, client: str) -> None:
        self.active[client] -= 1
        if self.active[client] <= 0:
            del self.active[client]


def client_address(request: web.Request, trust_forwarded: bool) -> str:
    """The peer, or with trusted proxies the address the nearest proxy saw (last X-Forwarded-For hop)."""
    forwarded = request.headers.get("X-Forwarded-For") if trust_forwarded else None
    if forwarded:
        return forwarded.rsplit(",", 1)[-1].strip()[:64]
    return request.remote or "unknown"


def head_size(request: web.Request) -> int:
    """Bytes of the request head as sent: request line and header lines with their CRLFs."""
    size = len(request.method) + len(request.raw_path) + 12
    for name, value in request.raw_headers:
        size += len(name) + len(value) + 4
    return size + 2


def _refuse(status: int, code: str, detail: str, **headers: str) -> web.StreamResponse:
    response = error_response(GatewayError(status, code, detail, headers=headers))
    response.force_close()
    return response


_CONNECTION_REFUSALS = {
    "too_many_connections": (503, "The gateway has too many open connections; retry shortly"),
    "too_many_client_connections": (429, "Too many open connections from this address"),
}


@web.middleware
async def admission(request: web.Request, handler: Handler) -> web.StreamResponse:
    guard = request.app[CONNECTION_GUARD]
    limits: Limits = guard.limits
    refusal = getattr(request.protocol, "refusal", None)
    if refusal is not None:
        status, detail = _CONNECTION_REFUSALS[refusal]
        return _refuse(status, refusal, detail, **{"Retry-After": "1"})
    if head_size(request) > limits.max_head_size:
        return _refuse(431, "headers_too_large", "The request head is too large")
    client = _ip_bucket(client_address(request, request.app[_TRUST_FORWARDED]()))  # IPv6: per /64
    requests: ClientRequests = request.app[_CLIENT_REQUESTS]
    if not requests.enter(client, limits.max_requests_per_client):
        raise GatewayError(429, "too_many_requests", "Too many requests in progress from this address",
                           headers={"Retry-After": "1"})
    try:
        return await handler(request)
    finally:
        requests.leave(client)


def install(app: web.Application, limits: Limits, trust_forwarded: Callable[[], bool]) -> ConnectionGuard:
    """The guard for ``app``'s connections (GuardedRunner uses it) and the state the middleware reads.

    Limits are read at start: a reload does not change them (docs/ops/limits.md).
    """
    guard = ConnectionGuard(limits)
    app[CONNECTION_GUARD] = guard
    app[_CLIENT_REQUESTS] = ClientRequests()
    app[_TRUST_FORWARDED] = trust_forwarded
    return guard


def saturation(guard: ConnectionGuard, slots: UpstreamSlots) -> str | None:
    """What /readyz reports while the process is full: its connections, or an upstream pool with a queue."""
    if guard.saturated:
        return "too_many_connections"
    if slots.saturated:
        return "upstream_busy"
    return None
