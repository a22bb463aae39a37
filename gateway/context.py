"""What one request learns on its way, for the steps after it: the one place request state is named.

Each key is set by exactly one step and read by later ones (the access log and
the metrics, mostly), so data flows down the pipeline only.
"""
from __future__ import annotations

from typing import Any, Awaitable, Callable, Final

from aiohttp import web

__all__ = [
    "ANSWER_HEADERS", "BODY_ERROR", "ERROR_CODE", "REQUEST_ID", "RESPONSE_BYTES", "REVOCATION_SKIPPED", "ROUTE_NAME", "SUBJECT",
    "CLIENT", "UPSTREAM_ERROR", "UPSTREAM_SECONDS", "Client", "Handler", "state",
]


class Client:
    """Who sent a request, computed once per request from the trusted-forwarding rule (``forwarded.identify``, in
    the admission middleware); every later step reads it here and none applies the rule on its own.

    Per-request values of the hot path are plain classes with ``Final`` attributes rather than frozen dataclasses:
    as immutable (mypy, and at run time in the compiled build), and ten times cheaper to make compiled
    (docs/performance.md, the night round)."""

    __slots__ = ("address", "bucket", "from_proxy")

    def __init__(self, address: str, bucket: str, from_proxy: bool) -> None:
        self.address: Final = address  # the peer's, or behind trusted proxies the nearest address none vouches for
        self.bucket: Final = bucket  # ``net.ip_bucket(address)``: what per-client counts count (IPv6 per /64)
        self.from_proxy: Final = from_proxy  # the peer is a trusted proxy: its X-Forwarded-Proto/-Host and chains count


REQUEST_ID = web.RequestKey("request_id", str)  # the middleware: the client's sane X-Request-Id or a new one
ROUTE_NAME = web.RequestKey("route", str)  # dispatch: the matched route's name, or @<path> for own endpoints
SUBJECT = web.RequestKey("sub", str)  # credentials and the token endpoints: the verified caller
CLIENT = web.RequestKey("client", Client)  # limits.admission: who sent the request (forwarded.identify)
REVOCATION_SKIPPED = web.RequestKey("revocation_skipped", bool)  # stores.failopen: checked on the signature alone
UPSTREAM_SECONDS = web.RequestKey("upstream_seconds", float)  # upstream.http: until the upstream's headers arrived
UPSTREAM_ERROR = web.RequestKey("upstream_error", str)  # upstream.http: unavailable, timeout or aborted
RESPONSE_BYTES = web.RequestKey("response_bytes", int)  # upstream.http: body bytes relayed to the client
BODY_ERROR = web.RequestKey("body_error", str)  # upstream.bodies: "timeout", "too_slow" or "client_closed"
TRACE_ID = web.RequestKey("trace_id", str)  # the middleware, with tracing on: the request's trace, for the access line
ERROR_CODE = web.ResponseKey("error_code", str)  # errors: the gateway's code on every error answer, any dialect

# A step of the request's way: an endpoint's handler, or what a middleware hands the request on to.
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def state(request: web.BaseRequest) -> dict[Any, Any]:
    """The request's context as the dict it is (aiohttp's Request keeps it in ``_state``), for the steps that run on
    every request: a read, a write or a test is a dict operation, not a call of the Request's Python-level
    ``__getitem__``/``__setitem__``, and a missing key a dict miss, not a KeyError raised and caught inside
    ``Mapping.get`` or ``in``."""
    return request._state


# create_app: the one function that adds the headers every answer carries (X-Request-Id, Server, CORS,
# RateLimit). The middleware calls it on answers it returns unprepared; code that prepares a streamed
# answer itself (the proxy relay, the websocket handshake) calls it just before ``prepare``. No
# on_response_prepare hook: a hook costs every answer a signal dispatch and a coroutine per receiver.
ANSWER_HEADERS = web.AppKey[Callable[[web.Request, web.StreamResponse], None]]("answer_headers")
