"""Answers to requests aiohttp cannot parse, in the gateway's JSON shape and without echoing them.

aiohttp answers a malformed request (bad header line, oversized head, bad
method) itself, in plain text that quotes the offending bytes, which may be
the start of a token or a cookie. ``GatewayRunner`` serves the application
with a protocol handler whose error answer is ``{"detail", "code"}`` with a
fixed text per status, the configured ``Server`` header and no request bytes.

This relies on two aiohttp internals, pinned by tests/test_trust_boundary.py:
``AppRunner._make_server`` returns the ``web.Server`` that creates one
``RequestHandler`` per connection, and ``RequestHandler.handle_error`` builds
the error response.
"""
from __future__ import annotations

import json
from http import HTTPStatus
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

__all__ = ["GatewayRunner"]

_CODES = {400: "bad_request", 413: "payload_too_large", 431: "headers_too_large", 501: "not_implemented"}


def protocol_error(status: int, server: str) -> web.Response:
    """The answer to an unparseable request: the status, a fixed text, nothing from the request."""
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    code = _CODES.get(status, "bad_request" if status < 500 else "internal_error")
    body = {"detail": f"{phrase}: the request could not be parsed" if status < 500 else phrase, "code": code}
    response = web.Response(
        status=status, body=json.dumps(body).encode(), content_type="application/json", headers={"Server": server}
    )
    response.force_close()
    return response


class _Handler(RequestHandler):
    server_header = "gateway"

    def handle_error(
        self, request: BaseRequest, status: int = 500, exc: BaseException | None = None, message: str | None = None
    ) -> web.StreamResponse:
        super().handle_error(request, status, exc, message)  # logs (filtered by logs.MalformedRequestFilter), checks state
        return protocol_error(status, self.server_header)


class _Server(web.Server):
    handler_class: type[_Handler] = _Handler

    def __call__(self) -> RequestHandler:
        return self.handler_class(self, loop=self._loop, **self._kwargs)


class GatewayRunner(web.AppRunner):
    """An AppRunner whose protocol errors are JSON and whose ``Server`` header names no versions."""

    def __init__(self, app: web.Application, *, server_header: str, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self._handler_class = type("Handler", (_Handler,), {"server_header": server_header})

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = type("Server", (_Server,), {"handler_class": self._handler_class})
        return server
