"""One JSON access-log line per request: who, what, how it ended, how long it took.

Never the query string, headers or body: they may carry secrets.

The line is written field by field rather than built as a dict and passed to
``json.dumps``: strings go through the same C escaper ``json.dumps`` uses, numbers
through ``repr`` as ``json.dumps`` does, so the line is byte for byte what
``json.dumps(record)`` gave (``tests/unit/test_access_line.py`` checks that), at a
fraction of the cost. The timestamp's seconds part is formatted once per second
and the process id read once per process (again after a fork).
"""
from __future__ import annotations

import os
import time
from json.encoder import encode_basestring_ascii
from typing import Any, ClassVar, Mapping

from aiohttp import web

from gateway.context import (
    ERROR_CODE,
    REQUEST_ID,
    RESPONSE_BYTES,
    REVOCATION_SKIPPED,
    ROUTE_NAME,
    SUBJECT,
    TRACE_ID,
    UPSTREAM_ERROR,
    UPSTREAM_SECONDS,
)
from gateway.forwarded import client

__all__ = ["FIELDS", "access_line"]

MAX_LOGGED_PATH = 2048
# Always present, in this order; then "code", "upstream_error", "revocation_check" and "trace_id" when they apply.
FIELDS = ("time", "request_id", "method", "path", "route", "status", "duration_ms", "upstream_ms", "sub",
          "client", "bytes", "pid")


class _Process:
    pid: ClassVar[int] = os.getpid()


def _new_pid() -> None:
    _Process.pid = os.getpid()


os.register_at_fork(after_in_child=_new_pid)  # gateway run --workers N forks its workers


def _text(value: str | None) -> str:
    return "null" if value is None else encode_basestring_ascii(value)


def _ms(seconds: float | None) -> str:
    """Milliseconds as ``repr(round(ms, 2))`` writes them ("12.5", "3.0", "0.17"): the same correctly rounded
    decimal, in one conversion instead of three (tests/unit/test_access_line.py compares the two)."""
    if seconds is None:
        return "null"
    text = f"{seconds * 1000:.2f}".rstrip("0")
    return text + "0" if text.endswith(".") else text


def access_line(state: Mapping[Any, Any], request: web.Request, response: web.StreamResponse, duration: float) -> str:
    """The JSON line for one answered request; ``state`` is the request's context (``dict(request.items())``)."""
    code = response.get(ERROR_CODE) if len(response) else None
    line = (
        f'{{"time": "{_timestamp()}", "request_id": {_text(state.get(REQUEST_ID))}, '
        f'"method": {_text(request.method)}, "path": {_text(request.path[:MAX_LOGGED_PATH])}, '
        f'"route": {_text(state.get(ROUTE_NAME))}, "status": {response.status}, '
        f'"duration_ms": {_ms(duration)}, "upstream_ms": {_ms(state.get(UPSTREAM_SECONDS))}, '
        f'"sub": {_text(state.get(SUBJECT))}, "client": {_text(client(request).address)}, '
        f'"bytes": {_body_bytes(state, response)}, "pid": {_Process.pid}'
    )
    if code is not None:
        line += f', "code": {_text(code)}'
    error = state.get(UPSTREAM_ERROR)
    if error is not None:
        line += f', "upstream_error": {_text(error)}'
    if state.get(REVOCATION_SKIPPED):
        line += ', "revocation_check": "skipped"'
    trace = state.get(TRACE_ID)
    if trace is not None:
        line += f', "trace_id": "{trace}"'
    return line + "}"


class _Clock:
    second: ClassVar[int] = -1
    prefix: ClassVar[str] = ""


_MILLIS = tuple(f".{ms:03d}Z" for ms in range(1000))  # a timestamp's last part, formatted once


def _timestamp() -> str:
    """``2026-11-27T13:05:54.123Z``; the part up to the seconds is formatted once per second."""
    now = time.time()
    second = int(now)
    if second != _Clock.second:
        _Clock.prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        _Clock.second = second
    return _Clock.prefix + _MILLIS[int(now % 1 * 1000)]


def _body_bytes(state: Mapping[Any, Any], response: web.StreamResponse) -> int:
    """Body bytes sent: counted by the proxy while streaming, else the length of the buffered body."""
    relayed = state.get(RESPONSE_BYTES)
    if relayed is not None:
        return int(relayed)
    body = getattr(response, "body", None)
    if isinstance(body, (bytes, bytearray)):
        return len(body)
    return response.content_length or 0
