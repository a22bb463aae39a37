"""Admission of each request: connection refusals, head size and concurrent requests per client.

Runs inside the access-log middleware, so every refusal here is logged and
counted like any other answer. The connection-level part (caps, head timeout)
is in ``connections``; this is what can only be checked with a parsed request.
"""
from __future__ import annotations

import contextlib
import logging
from collections import Counter
from typing import Callable, Iterator

from aiohttp import web

from gateway.config.limits import Limits
from gateway.context import CLIENT, Handler, state
from gateway.errors import ErrorCode, GatewayError, error_response
from gateway.forwarded import identify
from gateway.net import TrustedProxies
from gateway.upstream.slots import UpstreamSlots

log = logging.getLogger("gateway")

__all__ = ["CONNECTION_GUARD", "ClientRequests", "ConnectionGuard", "admission", "head_size", "install", "saturation", "websocket_slot"]

# Descriptors each client connection may cost: itself and one upstream connection.
FDS_PER_CONNECTION = 2
FD_RESERVE = 64  # listeners, Redis, logs, JWKS fetches

class ConnectionGuard:
    """Open connections of one process, in total and per client address.

    A trusted proxy's connections (``trusted_proxies``) count towards the total
    only: they carry many clients, each counted by its own address per request.
    """

    def __init__(self, limits: Limits, proxies: Callable[[], TrustedProxies] = TrustedProxies,
                 observer: Callable[[int, int], None] | None = None) -> None:
        self.limits = limits
        self.proxies = proxies  # the current configuration's trusted proxies (a reload changes them)
        self.open = 0
        self.per_client: Counter[str] = Counter()
        self.websockets = 0
        self.fd_capacity: int | None = None  # set from RLIMIT_NOFILE by the server
        self.observer = observer  # (open connections, open websockets), for metrics
        self.requests = ClientRequests()  # requests in progress per client address (the admission middleware)
        self.uncapped: Callable[[web.Request], bool] = lambda request: False  # what max_requests_per_client skips

    def _report(self) -> None:
        if self.observer is not None:
            self.observer(self.open, self.websockets)

    @property
    def capacity(self) -> int:
        """``max_connections``, lowered when the descriptor limit could not hold that many."""
        if self.fd_capacity is None:
            return self.limits.max_connections
        return max(1, min(self.limits.max_connections, self.fd_capacity))

    def set_fd_limit(self, nofile: int) -> None:
        self.fd_capacity = max(1, (nofile - FD_RESERVE) // FDS_PER_CONNECTION)
        if self.fd_capacity < self.limits.max_connections:
            # a warning only when the operator asked for more: lowering the default is routine
            level = logging.WARNING if "max_connections" in self.limits.model_fields_set else logging.INFO
            log.log(
                level, "open files limit %d holds only %d client connections: limits.max_connections %d lowered to that",
                nofile, self.fd_capacity, self.limits.max_connections,
            )

    def admit(self, client: str, peer: str | None = None) -> ErrorCode | None:
        """Count a new connection in; the refusal code when it is over a cap (then it is not counted).

        ``client`` is the peer's bucket (``net.ip_bucket``), ``peer`` its address: a trusted proxy
        has no per-address cap.
        """
        if self.open >= self.capacity:
            return ErrorCode.TOO_MANY_CONNECTIONS
        if self.per_client[client] >= self.limits.max_connections_per_client and not self.proxies().is_proxy(peer):
            return ErrorCode.TOO_MANY_CLIENT_CONNECTIONS
        self.open += 1
        self.per_client[client] += 1
        self._report()
        return None

    def release(self, client: str) -> None:
        self.open -= 1
        self.per_client[client] -= 1
        if self.per_client[client] <= 0:
            del self.per_client[client]
        self._report()

    @property
    def saturated(self) -> bool:
        return self.open >= self.capacity

    def admit_websocket(self) -> bool:
        if self.websockets >= self.limits.max_websockets:
            return False
        self.websockets += 1
        self._report()
        return True

    def release_websocket(self) -> None:
        self.websockets -= 1
        self._report()



CONNECTION_GUARD = web.AppKey("connection_guard", ConnectionGuard)



class ClientRequests:
    """Requests in progress per client address."""

    def __init__(self) -> None:
        self.active: dict[str, int] = {}  # a plain dict: a Counter's missing key is a Python call, twice a request

    def enter(self, client: str, limit: int) -> bool:
        count = self.active.get(client, 0)
        if count >= limit:
            return False
        self.active[client] = count + 1
        return True

    def leave(self, client: str) -> None:
        left = self.active[client] - 1
        if left <= 0:
            del self.active[client]
        else:
            self.active[client] = left


def head_size(request: web.Request) -> int:
    """Bytes of the request head as sent: request line and header lines with their CRLFs."""
    size = len(request.method) + len(request.raw_path) + 12
    for name, value in request.raw_headers:
        size += len(name) + len(value) + 4
    return size + 2


def _refuse(status: int, code: ErrorCode, detail: str, **headers: str) -> web.StreamResponse:
    response = error_response(GatewayError(status, code, detail, headers=headers))
    response.force_close()
    return response


_CONNECTION_REFUSALS = {
    ErrorCode.TOO_MANY_CONNECTIONS: (503, "The gateway has too many open connections; retry shortly"),
    ErrorCode.TOO_MANY_CLIENT_CONNECTIONS: (429, "Too many open connections from this address"),
}


async def admission(request: web.Request, handler: Handler) -> web.StreamResponse:
    guard = request.app[CONNECTION_GUARD]
    limits: Limits = guard.limits
    state(request)[CLIENT] = client = identify(request, guard.proxies())  # who sent it: the one place the rule is applied
    refusal = getattr(request.protocol, "refusal", None)
    if refusal is not None:
        status, detail = _CONNECTION_REFUSALS[refusal]
        return _refuse(status, refusal, detail, **{"Retry-After": "1"})
    if head_size(request) > limits.max_head_size:
        return _refuse(431, ErrorCode.HEADERS_TOO_LARGE, "The request head is too large")
    if guard.uncapped(request):  # refresh and logout: never lost to a crowd sharing the address
        return await handler(request)
    requests = guard.requests
    if not requests.enter(client.bucket, limits.max_requests_per_client):
        raise GatewayError(429, ErrorCode.TOO_MANY_REQUESTS, "Too many requests in progress from this address",
                           headers={"Retry-After": "1"})
    try:
        return await handler(request)
    finally:
        requests.leave(client.bucket)


def install(app: web.Application, guard: ConnectionGuard, uncapped: Callable[[web.Request], bool] = lambda request: False) -> None:
    """``guard`` for ``app``'s connections (GuardedRunner uses it) and the state the middleware reads.

    ``uncapped`` tells the requests that ``max_requests_per_client`` does not count.
    Limits are read at start: a reload does not change them (docs/limits.md).
    """
    guard.uncapped = uncapped
    app[CONNECTION_GUARD] = guard


def saturation(guard: ConnectionGuard, slots: UpstreamSlots) -> ErrorCode | None:
    """What /readyz reports while the process is full: its connections, or an upstream pool with a queue."""
    if guard.saturated:
        return ErrorCode.TOO_MANY_CONNECTIONS
    if slots.saturated:
        return ErrorCode.UPSTREAM_BUSY
    return None


@contextlib.contextmanager
def websocket_slot(request: web.Request) -> Iterator[None]:
    """One of ``limits.max_websockets`` for the life of a socket; 503 ``too_many_websockets`` when none is free."""
    guard = request.app.get(CONNECTION_GUARD)
    if guard is not None and not guard.admit_websocket():
        raise GatewayError(503, ErrorCode.TOO_MANY_WEBSOCKETS, "The gateway holds too many websockets; retry shortly",
                           headers={"Retry-After": "1"})
    try:
        yield
    finally:
        if guard is not None:
            guard.release_websocket()
