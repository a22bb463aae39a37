"""One JSON access-log line per request: who, what, how it ended, how long it took.

Never the query string, headers or body: they may carry secrets.
"""
from __future__ import annotations

import os
import time

from aiohttp import web

from gateway.context import (
    ERROR_CODE,
    REQUEST_ID,
    RESPONSE_BYTES,
    REVOCATION_SKIPPED,
    ROUTE_NAME,
    SUBJECT,
    UPSTREAM_ERROR,
    UPSTREAM_SECONDS,
)
from gateway.forwarded import client_ip

__all__ = ["access_record"]

MAX_LOGGED_PATH = 2048


def access_record(request: web.Request, response: web.StreamResponse, duration: float, trust_forwarded: bool) -> dict[str, object]:
    upstream = request.get(UPSTREAM_SECONDS)
    record: dict[str, object] = {
        "time": _timestamp(),
        "request_id": request.get(REQUEST_ID),
        "method": request.method,
        "path": request.path[:MAX_LOGGED_PATH],
        "route": request.get(ROUTE_NAME),
        "status": response.status,
        "duration_ms": round(duration * 1000, 2),
        "upstream_ms": round(upstream * 1000, 2) if upstream is not None else None,
        "sub": request.get(SUBJECT),
        "client": client_ip(request, trust_forwarded),
        "bytes": _body_bytes(request, response),
        "pid": os.getpid(),
    }
    if ERROR_CODE in response:
        record["code"] = response[ERROR_CODE]
    if UPSTREAM_ERROR in request:
        record["upstream_error"] = request[UPSTREAM_ERROR]
    if request.get(REVOCATION_SKIPPED):
        record["revocation_check"] = "skipped"
    return record


def _timestamp() -> str:
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z"


def _body_bytes(request: web.Request, response: web.StreamResponse) -> int:
    """Body bytes sent: counted by the proxy while streaming, else the length of the buffered body."""
    if RESPONSE_BYTES in request:
        return request[RESPONSE_BYTES]
    body = getattr(response, "body", None)
    if isinstance(body, (bytes, bytearray)):
        return len(body)
    return response.content_length or 0
