"""Client connections: counted, capped, and closed when they dawdle over a request head.

aiohttp reads request heads without a time limit and keeps idle connections
for an hour, so one client with slow or idle sockets can use up the process's
file descriptors. Here every connection of the public listener

* counts towards ``limits.max_connections`` and, per client address (IPv6:
  per /64; not for ``trusted_proxies``), ``limits.max_connections_per_client``; a connection over either cap is
  answered 503 ``too_many_connections`` (429 per client) and closed;
* must deliver each request head within ``limits.head_timeout`` of its first
  byte (a new connection: of opening), else it is answered 408 and closed;
* may sit idle between requests for ``limits.keepalive_timeout``;
* may send a head of at most ``limits.max_head_size`` bytes,
  ``limits.max_header_count`` header lines and ``limits.max_header_line``
  bytes a line, else 431 (414 for the request line).

Every refusal is the gateway's JSON shape, never aiohttp's text page.
"""
from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, Awaitable, Callable

from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage, BadHttpMethod, LineTooLong

from gateway.errors import ErrorCode
from gateway.limits import ConnectionGuard
from gateway.net import ip_bucket

__all__ = ["GuardedRunner", "REFUSAL", "raw_error"]

log = logging.getLogger("gateway")

LINGER = 2.0  # seconds a refused connection is read (and dropped) before it closes


# Why a connection was not admitted, read by the admission middleware from ``request.protocol``.
REFUSAL = "gateway_refusal"


def raw_error(status: int, reason: str, code: str, detail: str) -> bytes:
    """A complete HTTP/1.1 error answer for a connection that gets no request handler."""
    body = json.dumps({"detail": detail, "code": code}).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


class GuardedHandler(web.RequestHandler):
    """aiohttp's connection handler with the guard's counting and the head limits."""

    def __init__(self, manager: web.Server, guard: ConnectionGuard, server_header: str, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self.guard = guard
        self.server_header = server_header  # aiohttp's default names Python's and its own version
        self.client = ""
        self.refusal: ErrorCode | None = None
        self._counted = False
        self._head_timer: asyncio.TimerHandle | None = None
        self._head_bytes = 0  # bytes of the request head being read (0: between requests)
        self._body: Any = None  # the payload of the last request parsed
        self._discarding = False  # answered and closing: what still arrives is dropped

    # -- counting ----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        peer = transport.get_extra_info("peername")
        # IPv6 per /64 (one subscriber's block), as the login throttle counts
        address = str(peer[0]) if isinstance(peer, (tuple, list)) and peer else None
        self.client = ip_bucket(address) if address is not None else "unix"
        self.refusal = self.guard.admit(self.client, address)  # a trusted proxy: no per-address cap
        self._counted = self.refusal is None
        super().connection_made(transport)
        self._start_head_timer()

    def connection_lost(self, exc: BaseException | None) -> None:
        self._stop_head_timer()
        if self._counted:
            self._counted = False
            self.guard.release(self.client)
        super().connection_lost(exc)

    # -- the request head ----------------------------------------------------------------

    def _reading_body_or_upgraded(self) -> bool:
        if self._upgraded or self._payload_parser is not None:
            return True
        return self._body is not None and not self._body.is_eof()

    def data_received(self, data: bytes) -> None:
        if self._force_close or self._close or self._discarding:
            return
        if self._reading_body_or_upgraded():
            super().data_received(data)
            return
        count = len(self._messages)
        super().data_received(data)
        if len(self._messages) > count:  # a head completed
            self._body = self._messages[-1][1]
            self._head_bytes = 0
            if self._head_timer is not None:  # a keep-alive request's head in one read: none was started
                self._stop_head_timer()
            return
        self._head_bytes += len(data)
        if self._head_bytes > self.guard.limits.max_head_size:
            self._answer_and_close(431, "Request Header Fields Too Large", ErrorCode.HEADERS_TOO_LARGE,
                                   "The request head is too large")
            return
        if self._head_timer is None:
            self._start_head_timer()

    def _start_head_timer(self) -> None:
        if self.transport is None:
            return
        self._head_timer = self._loop.call_later(self.guard.limits.head_timeout, self._head_timed_out)

    def _stop_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self._reading_body_or_upgraded() or self._messages:
            return
        if self._request_in_progress:  # bytes of a pipelined request: their clock starts after this one
            self._start_head_timer()
            return
        if self._head_bytes:
            self._answer_and_close(408, "Request Timeout", ErrorCode.REQUEST_TIMEOUT, "The request head did not arrive in time")
        else:
            self.force_close()  # a connection that never sent anything gets no answer

    def _answer_and_close(self, status: int, reason: str, code: ErrorCode, detail: str) -> None:
        """Answer, then read and drop what the client still sends for a moment before closing.

        Closing with unread bytes in the socket would reset the connection, and the
        client would likely lose the answer along with it.
        """
        transport = self.transport
        if transport is None or self._request_in_progress:
            self.force_close()
            return
        transport.write(raw_error(status, reason, code, detail))
        self._discarding = True
        self._stop_head_timer()
        if transport.can_write_eof():
            transport.write_eof()
        self._loop.call_later(LINGER, self.force_close)

    # -- aiohttp's own refusals, in the gateway's shape ------------------------------------

    def handle_error(
        self, request: Any, status: int = 500, exc: BaseException | None = None, message: str | None = None
    ) -> web.StreamResponse:
        if request.writer.output_size > 0:
            raise ConnectionError("Response is sent already, cannot send another response with the error message")
        code, detail = ErrorCode.BAD_REQUEST, "The request is not valid HTTP"
        if isinstance(exc, LineTooLong):
            line = bytes(exc.args[0]) if isinstance(exc.args[0], (bytes, bytearray)) else str(exc.args[0]).encode()
            if line.startswith((b"/", b"http:", b"https:", b"*")):  # the request target
                status, code, detail = 414, ErrorCode.URI_TOO_LONG, "The request target is too long"
            else:
                status, code, detail = 431, ErrorCode.HEADERS_TOO_LARGE, "A request header line is too long"
        elif isinstance(exc, BadHttpMessage) and "Too many headers" in str(exc):
            status, code, detail = 431, ErrorCode.HEADERS_TOO_LARGE, "The request has too many header lines"
        elif status >= 500:
            code, detail = ErrorCode.INTERNAL_ERROR, "Internal error; see the gateway log"
        # aiohttp's own log line; logs.MalformedRequestFilter keeps the peer and drops the raw bytes.
        if isinstance(exc, BadHttpMethod) and self._request_count == 1:
            self.logger.debug("Error handling request from %s", request.remote, exc_info=exc)
        else:
            self.log_exception("Error handling request from %s", request.remote, exc_info=exc)
        response = web.Response(
            status=status, body=json.dumps({"detail": detail, "code": code}).encode(), content_type="application/json",
            headers={"Server": self.server_header},
        )
        response.force_close()
        return response


class _GuardedServer(web.Server):
    def __init__(self, *args: Any, guard: ConnectionGuard, server_header: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.guard = guard
        self.server_header = server_header

    def __call__(self) -> GuardedHandler:
        return GuardedHandler(self, self.guard, self.server_header, loop=self._loop, **self._kwargs)


class GuardedRunner(web.AppRunner):
    """An AppRunner whose connections go through a ``ConnectionGuard``."""

    def __init__(self, app: web.Application, guard: ConnectionGuard, *, server_header: str = "gateway",
                 handler: Callable[[web.Application], Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]]
                 | None = None, **kwargs: Any) -> None:
        limits = guard.limits
        kwargs.setdefault("keepalive_timeout", limits.keepalive_timeout)
        kwargs.setdefault("max_line_size", limits.max_header_line)
        kwargs.setdefault("max_field_size", limits.max_header_line)
        kwargs.setdefault("max_headers", limits.max_header_count)
        super().__init__(app, **kwargs)
        self.guard = guard
        self.server_header = server_header
        self.handler = handler  # the app's own handler instead of Application._handle (server/front.py)

    async def _make_server(self) -> web.Server:
        plain = await super()._make_server()  # starts the app (cleanup_ctx) and freezes it
        request_handler = plain.request_handler if self.handler is None else self.handler(self._app)
        return _GuardedServer(
            request_handler, request_factory=plain.request_factory, loop=plain._loop,
            handler_cancellation=plain.handler_cancellation, guard=self.guard, server_header=self.server_header,
            **plain._kwargs,
        )
