"""The outermost middleware: every failure becomes a JSON answer, every request is counted and logged once.

``answer_headers`` is the one place that adds the headers every answer carries;
see ``context.ANSWER_HEADERS`` for who calls it.
"""
from __future__ import annotations

import logging
import os
import re
import time
from typing import Mapping

from aiohttp import web
from aiohttp.http import SERVER_SOFTWARE

from gateway.context import (
    ERROR_CODE,
    REQUEST_ID,
    REVOCATION_SKIPPED,
    ROUTE_NAME,
    SUBJECT,
    TRACE_ID,
    UPSTREAM_ERROR,
    UPSTREAM_SECONDS,
    Handler,
    state,
)
from gateway.errors import ErrorCode, GatewayError, error_response
from gateway.forwarded import client, forwarded_by_proxy
from gateway.framing import own_answer
from gateway.observe.access_log import access_line
from gateway.observe.logs import write_access
from gateway.observe.tracing import Tracer
from gateway.rate_limit import add_headers as rate_limit_headers
from gateway.runtime import GATEWAY, RUNTIME, Gateway

__all__ = ["CLIENT_CLOSED", "answer_headers", "errors_and_access_log"]

log = logging.getLogger("gateway")
access_log = logging.getLogger("gateway.access")

CLIENT_CLOSED = 499  # nginx's status for "client closed the connection", in logs and metrics only


_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_ID_BYTES = 16  # a new request id: 16 random bytes, 32 hex digits
_ID_POOL = 4096  # read from os.urandom at once: one system call per 256 new ids instead of one each


class _NewIds:
    """New request ids, from ``os.urandom`` read ``_ID_POOL`` bytes at a time; a forked child starts afresh (it never
    hands out its parent's)."""

    def __init__(self) -> None:
        self.pool = b""
        self.at = 0

    def next(self) -> str:
        at = self.at
        if at + _ID_BYTES > len(self.pool):
            self.pool, at = os.urandom(_ID_POOL), 0
        self.at = at + _ID_BYTES
        return self.pool[at:at + _ID_BYTES].hex()

    def forget(self) -> None:
        self.pool, self.at = b"", 0


_NEW_IDS = _NewIds()
os.register_at_fork(after_in_child=_NEW_IDS.forget)


def request_id(headers: Mapping[str, str]) -> str:
    """The client's X-Request-Id if it is sane, else a new one."""
    given = headers.get("X-Request-Id")
    return given if given is not None and _REQUEST_ID.match(given) else _NEW_IDS.next()


def answer_headers(request: web.Request, response: web.StreamResponse) -> None:
    """What every answer, proxied or the gateway's own, carries; called once per answer, before it is prepared.

    The request id the upstream saw; a ``Server`` header without versions unless the
    upstream sent its own (aiohttp's default names Python's and its own version); a
    rate-limited route's ``RateLimit`` headers; the CORS policy's headers.
    """
    headers = response.headers
    context = state(request)
    rid = context.get(REQUEST_ID)
    if rid:
        headers["X-Request-Id"] = rid
    runtime = context.get(RUNTIME) or request.app[GATEWAY].runtime  # the request's own snapshot (a reload may land)
    if headers.get("Server", SERVER_SOFTWARE) == SERVER_SOFTWARE:
        headers["Server"] = runtime.config.server_header
    rate_limit_headers(request, response)
    if runtime.cors is not None:
        runtime.cors.decorate(request, response)


async def errors_and_access_log(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn every failure into a JSON answer; count, measure and log every request once."""
    started = time.perf_counter()
    state(request)[REQUEST_ID] = rid = request_id(request.headers)
    gateway = request.app[GATEWAY]
    gateway.lifecycle.in_flight += 1  # the in-flight gauge reads it (Metrics.follow_in_flight) ...
    if gateway.metrics.in_flight_shared is not None:  # ... except where workers share their samples' files
        gateway.metrics.in_flight_shared.inc()
    if gateway.tracer is not None:
        return await _traced(request, handler, gateway, gateway.tracer, rid, started)
    return await _answered(request, handler, gateway, rid, started)


async def _traced(request: web.Request, handler: Handler, gateway: Gateway, tracer: Tracer, rid: str,
                  started: float) -> web.StreamResponse:
    """The request inside its server span (observe/tracing.py), which learns how it ended."""
    rule = tracer.settings.continue_from
    continued = rule == "any" or (rule == "trusted_proxies" and forwarded_by_proxy(request, gateway.runtime.config.proxies))
    with tracer.server(request, continued, rid) as span:
        trace = tracer.trace_id(span)
        if trace is not None:
            request[TRACE_ID] = trace
        response = await _answered(request, handler, gateway, rid, started)
        code = response.get(ERROR_CODE) if len(response) else None
        tracer.finish(span, request.get(ROUTE_NAME), response.status, client(request).address, request.get(SUBJECT), code)
    return response


async def _answered(request: web.Request, handler: Handler, gateway: Gateway, rid: str,
                    started: float) -> web.StreamResponse:
    try:
        response = await handler(request)
    except GatewayError as exc:
        response = error_response(exc)
    except web.HTTPException as exc:  # raised by aiohttp itself, e.g. 413 for an oversized body
        code = ErrorCode.BAD_REQUEST if exc.status < 500 else ErrorCode.INTERNAL_ERROR
        response = error_response(GatewayError(exc.status, code, exc.reason))
    except ConnectionResetError:  # the client left before its answer could be written
        response = error_response(GatewayError(CLIENT_CLOSED, ErrorCode.CLIENT_CLOSED, "The client closed the connection"))
    except Exception:
        log.exception("unhandled error (request id %s)", rid)
        response = error_response(GatewayError(500, ErrorCode.INTERNAL_ERROR, "Internal error; see the gateway log"))
    finally:
        gateway.lifecycle.in_flight -= 1
        if gateway.metrics.in_flight_shared is not None:
            gateway.metrics.in_flight_shared.dec()
    own = not response.prepared  # the proxy relay and websockets prepared theirs, having called answer_headers
    if own:
        answer_headers(request, response)
        if gateway.lifecycle.draining:
            response.force_close()  # the client's next request opens a connection to a live instance
    _observe(request, response, time.perf_counter() - started, gateway)
    # logged before it is sent, as when aiohttp sends it: a client that has its answer finds its line
    return await own_answer(request, response) if own else response  # one write when aiohttp has nothing to decide


def _observe(request: web.Request, response: web.StreamResponse, duration: float, gateway: Gateway) -> None:
    context = state(request)
    route = context.get(ROUTE_NAME) or "unmatched"
    bound = gateway.metrics.route(route)
    bound.request(request.method, response.status, duration)
    bound.upstream(context.get(UPSTREAM_SECONDS), context.get(UPSTREAM_ERROR))
    if len(response):
        code = response.get(ERROR_CODE)
        if code is not None:
            gateway.metrics.refused(response.status, code)
    if context.get(REVOCATION_SKIPPED):
        gateway.metrics.fail_open.inc()
    if access_log.isEnabledFor(logging.INFO):
        write_access(access_line(context, request, response, duration))
