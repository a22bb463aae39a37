"""The outermost middleware: every failure becomes a JSON answer, every request is counted and logged once."""
from __future__ import annotations

import json
import logging
import os
import re
import time
from typing import Awaitable, Callable, Mapping

from aiohttp import web

from gateway.context import ERROR_CODE, REQUEST_ID, REVOCATION_SKIPPED, ROUTE_NAME, UPSTREAM_ERROR, UPSTREAM_SECONDS
from gateway.errors import GatewayError, error_response
from gateway.observe.access_log import access_record
from gateway.runtime import GATEWAY, Gateway

__all__ = ["CLIENT_CLOSED", "errors_and_access_log"]

log = logging.getLogger("gateway")
access_log = logging.getLogger("gateway.access")

CLIENT_CLOSED = 499  # nginx's status for "client closed the connection", in logs and metrics only


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def request_id(headers: Mapping[str, str]) -> str:
    """The client's X-Request-Id if it is sane, else a new one."""
    given = headers.get("X-Request-Id", "")
    return given if _REQUEST_ID.match(given) else os.urandom(16).hex()


@web.middleware
async def errors_and_access_log(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn every failure into a JSON answer; count, measure and log every request once."""
    started = time.perf_counter()
    request[REQUEST_ID] = rid = request_id(request.headers)
    gateway = request.app[GATEWAY]
    gateway.lifecycle.in_flight += 1
    gateway.metrics.in_flight.inc()
    try:
        response = await handler(request)
    except GatewayError as exc:
        response = error_response(exc)
    except web.HTTPException as exc:  # raised by aiohttp itself, e.g. 413 for an oversized body
        code = "bad_request" if exc.status < 500 else "internal_error"
        response = error_response(GatewayError(exc.status, code, exc.reason))
    except ConnectionResetError:  # the client left before its answer could be written
        response = error_response(GatewayError(CLIENT_CLOSED, "client_closed", "The client closed the connection"))
    except Exception:
        log.exception("unhandled error (request id %s)", rid)
        response = error_response(GatewayError(500, "internal_error", "Internal error; see the gateway log"))
    finally:
        gateway.lifecycle.in_flight -= 1
        gateway.metrics.in_flight.dec()
    if gateway.lifecycle.draining and not response.prepared:
        response.force_close()  # the client's next request opens a connection to a live instance
    _observe(request, response, time.perf_counter() - started, gateway)
    return response


def _observe(request: web.Request, response: web.StreamResponse, duration: float, gateway: Gateway) -> None:
    route = request.get(ROUTE_NAME) or "unmatched"
    metrics = gateway.metrics
    metrics.request(route, request.method, response.status, duration)
    metrics.upstream(route, request.get(UPSTREAM_SECONDS), request.get(UPSTREAM_ERROR))
    code = response.get(ERROR_CODE)
    if code is not None:
        metrics.refused(response.status, code)
    if request.get(REVOCATION_SKIPPED):
        metrics.fail_open.inc()
    if access_log.isEnabledFor(logging.INFO):
        trust = gateway.runtime.config.trust_forwarded_headers
        access_log.info(json.dumps(access_record(request, response, duration, trust)))
