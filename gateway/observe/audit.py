"""Audit events: the stable names, the one way to emit one, and the JSON line it becomes.

An audit event is a record on the standard logger ``gateway.audit``:
``log.info("<event.name>", extra={"audit": {<fields>}})``. ``emit`` is that call
with the request's facts filled in (the client address the gateway trusts, the
request id); code that knows no HTTP (``auth.sessions``, ``auth.throttle``) is
told which request it serves by ``about(request)``, a context variable set by
the endpoint that calls it. ``AuditFormatter`` turns a record into one JSON
line: ``time`` (RFC 3339, UTC), ``event``, ``subject``, ``client``,
``request_id``, ``reason``, then the event's own fields. Where the lines go
(stdout, a file, a webhook) is ``observe.audit_sinks``; with ``audit.enabled:
false`` the logger has no handler and drops every record.

Never a token, password, code, key or cookie value: no caller passes one, and
the formatter replaces any field whose name says it holds one (``SECRET_FIELDS``)
with ``"[redacted]"``, whoever emitted it. Events happen on logins, refreshes,
logouts, reloads and refusals of a presented credential: never one per
anonymous or successful proxied request (docs/audit.md).
"""
from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import time
from typing import Any, Iterator

from aiohttp import web

from gateway.context import REQUEST_ID
from gateway.forwarded import client

__all__ = ["EVENTS", "LOGGER", "RESERVED_PREFIXES", "SECRET_FIELDS", "AuditFormatter", "about", "emit", "refusal_reason"]

LOGGER = "gateway.audit"
log = logging.getLogger(LOGGER)
log.propagate = False  # never in the app log or the access log: the sinks are its only outputs

# The stable event names; docs/audit.md lists the same (a test keeps the two equal).
EVENTS: dict[str, str] = {
    "login.succeeded": "a session started: a password login or a sign-in through an identity provider",
    "login.failed": "a login refused: unknown user or wrong password (one answer for both)",
    "login.throttled": "a login refused by login throttling before the password was checked",
    "refresh.reuse_detected": "a spent refresh token was presented again: its whole session is revoked",
    "session.revoked": "a session ended by the gateway: reuse, the per-user session limit, a removed user",
    "logout": "a session ended by its user",
    "config.reloaded": "a new configuration is in force",
    "credential.refused": "a presented credential refused on a proxied request or a decision",
}
RESERVED_PREFIXES = ("admin.", "second_factor.", "service_key.")  # emitted by the admin API and later features

SECRET_FIELDS = frozenset({
    "password", "token", "access", "refresh", "access_token", "refresh_token", "id_token", "cookie", "code",
    "secret", "authorization", "csrf_token", "key_value",
})
REDACTED = "[redacted]"
_BASE = ("subject", "client", "request_id", "reason")

# Refusal reasons of credential.refused, by the refusal's error code.
_REASONS = {
    "token_revoked": "revoked",
    "token_reused": "reused",
    "permission_denied": "insufficient",
    "token_expired": "expired",
    "token_not_valid": "invalid",
    "csrf_failed": "csrf",
    "origin_not_allowed": "origin",
}

_request: contextvars.ContextVar[web.Request | None] = contextvars.ContextVar("gateway_audit_request", default=None)


@contextlib.contextmanager
def about(request: web.Request) -> Iterator[None]:
    """Events emitted inside (by code that knows no HTTP) carry this request's client and request id."""
    token = _request.set(request)
    try:
        yield
    finally:
        _request.reset(token)


def emit(event: str, request: web.Request | None = None, *, subject: str | None = None, reason: str | None = None,
         **fields: Any) -> None:
    """One audit event; ``request`` defaults to the one ``about`` names (none: no client or request id)."""
    if not log.hasHandlers():
        return
    request = request if request is not None else _request.get()
    record: dict[str, Any] = {"subject": subject, "client": None, "request_id": None, "reason": reason}
    if request is not None:
        record["client"] = client(request).address
        record["request_id"] = request.get(REQUEST_ID)
    record.update(fields)
    log.info(event, extra={"audit": record})


def refusal_reason(code: str) -> str | None:
    """``credential.refused``'s reason for a refusal's error code; None when the code is no credential's refusal."""
    return _REASONS.get(code)


def _timestamp(created: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created)) + f".{int(created % 1 * 1000):03d}Z"


class AuditFormatter(logging.Formatter):
    """One JSON object per event: time, event, subject, client, request_id, reason, then the event's own fields."""

    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, "audit", None)
        entry: dict[str, Any] = {"time": _timestamp(record.created), "event": record.getMessage()}
        entry.update((name, None) for name in _BASE)
        if isinstance(fields, dict):
            for name, value in fields.items():
                if name in ("time", "event"):
                    continue
                entry[str(name)] = REDACTED if str(name).lower() in SECRET_FIELDS and value is not None else value
        return json.dumps(entry, default=str, separators=(", ", ": "))
