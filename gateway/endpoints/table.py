"""The gateway's own HTTP endpoints: health, readiness, the browser client; shared helpers.

The token endpoints (login, refresh, verify, logout, me) are the ``gateway``
dialect of gateway/compat.py, so every dialect and cookie mode share one
implementation of them. Request bodies are JSON or forms, small (the app caps
them at 64 KiB), and anything malformed is a 4xx with a JSON reason.
"""
from __future__ import annotations

import asyncio
import functools
import hashlib
import json
from dataclasses import dataclass
from importlib import resources
from typing import Any, Mapping

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from gateway.auth.sessions import AuthService
from gateway.config import Endpoints
from gateway.context import Handler
from gateway.errors import ErrorCode, GatewayError
from gateway.lifecycle import LIFECYCLE
from gateway.limits import CONNECTION_GUARD

__all__ = ["NO_STORE", "Endpoint", "default_endpoints", "is_json", "json_response", "read_fields", "require_json",
           "static_script"]

FORM_TYPES = {"application/x-www-form-urlencoded", "multipart/form-data"}
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
READY_TIMEOUT = 2.0



@dataclass(frozen=True, slots=True)
class Endpoint:
    methods: frozenset[str]
    handler: Handler
    # Not counted in limits.max_requests_per_client: refresh and logout, so that many users behind one
    # address (a NAT, an untrusted proxy) can always renew and end their sessions (docs/limits.md).
    uncapped: bool = False


def json_response(data: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(status=status, body=json.dumps(data).encode(), content_type="application/json", headers=headers)


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    if len(keys) != len(set(keys)):
        raise ValueError("duplicate key")
    return dict(pairs)


def is_json(request: web.Request) -> bool:
    return request.content_type == "application/json" or request.content_type.endswith("+json")


def require_json(request: web.Request, what: str) -> None:
    """415 unless the body is JSON: for every endpoint that sets the session cookies (cookie mode).

    A form can be posted to the gateway by any site, and its answer's cookies would sign the
    victim's browser into the sender's account (login CSRF); JSON from another site needs a
    CORS preflight, which only `cors.allow_origins` pass.
    """
    if not is_json(request):
        raise GatewayError(415, ErrorCode.BAD_REQUEST, f"In cookie mode, send {what} as application/json")


async def read_fields(request: web.Request) -> dict[str, Any]:
    """The body as a dict: JSON object or form; empty if there is no body.

    The whole (small) body must arrive within ``limits.body_idle_timeout``, else 408.
    """
    if not request.body_exists:
        return {}
    guard = request.app.get(CONNECTION_GUARD)
    limit = guard.limits.body_idle_timeout if guard is not None else READY_TIMEOUT
    try:
        async with asyncio.timeout(limit):
            return await _read_fields(request)
    except TimeoutError:
        raise GatewayError(408, ErrorCode.BODY_TIMEOUT, "The request body stopped arriving") from None


async def _read_fields(request: web.Request) -> dict[str, Any]:
    ctype = request.content_type
    if is_json(request):
        raw = await request.read()
        try:
            data = json.loads(raw.decode("utf-8"), object_pairs_hook=_reject_duplicates)
        except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: [[[[... nested too deep
            raise GatewayError.bad_request("The body is not valid JSON") from None
        if not isinstance(data, dict):
            raise GatewayError.bad_request("The body must be a JSON object")
        return data
    if ctype in FORM_TYPES:
        try:
            form = await request.post()
        except (ValueError, LookupError, AssertionError, TypeError, HttpProcessingError):  # bad charset, broken multipart
            raise GatewayError.bad_request("The body is not a valid form") from None
        return {k: v for k, v in form.items() if isinstance(v, str)}
    raise GatewayError(415, ErrorCode.BAD_REQUEST, "Send the body as application/json or a form")


async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


async def readyz(request: web.Request, auth: AuthService) -> web.Response:
    """``/readyz``, bound to the configuration's sources and store by ``default_endpoints``."""
    lifecycle = request.app.get(LIFECYCLE)
    if lifecycle is not None and lifecycle.draining:
        return json_response({"status": "draining", "code": ErrorCode.DRAINING}, status=503)
    saturated = lifecycle.saturation() if lifecycle is not None else None
    if saturated is not None:
        return json_response({"status": "saturated", "code": saturated}, status=503)
    sources = await auth.users.health()  # reported, never fatal: proxied traffic needs no source
    extra = {"sources": sources} if len(sources) > 1 or "file" not in sources else {}
    try:
        await asyncio.wait_for(auth.store.ping(), READY_TIMEOUT)
    except (GatewayError, asyncio.TimeoutError):
        if lifecycle is not None and not lifecycle.store_required:  # fail_open: still able to serve
            return json_response({"status": "degraded", "code": ErrorCode.STORE_UNAVAILABLE, **extra})
        return json_response({"status": "unavailable", "code": ErrorCode.STORE_UNAVAILABLE, **extra}, status=503)
    if "down" in sources.values():
        return json_response({"status": "degraded", "code": ErrorCode.IDENTITY_UNAVAILABLE, **extra})
    return json_response({"status": "ready", **extra})


def etag(body: bytes) -> str:
    """A strong validator for a body the gateway serves itself."""
    return '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


def not_modified(request: web.Request, tag: str) -> bool:
    """RFC 9110 §13.1.2 If-None-Match: ``*``, or a list of tags compared weakly (``W/`` ignored)."""
    listed = ",".join(request.headers.getall("If-None-Match", []))
    candidates = {t.strip().removeprefix("W/") for t in listed.split(",") if t.strip()}
    return "*" in candidates or tag in candidates


def static_script(name: str) -> Handler:
    """A script of gateway/static/ (an ES module); revalidated on every load so fixes reach browsers at once."""
    body = resources.files("gateway").joinpath(f"static/{name}").read_bytes()
    tag = etag(body)

    async def serve(request: web.Request) -> web.Response:
        headers = {"ETag": tag, "Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}
        if not_modified(request, tag):
            return web.Response(status=304, headers=headers)
        return web.Response(body=body, headers={**headers, "Content-Type": "text/javascript; charset=utf-8"})

    return serve


client_js = static_script("client.js")  # the browser client


def default_endpoints(paths: Endpoints, auth: AuthService) -> dict[str, Endpoint]:
    """The endpoint table keyed by path (no trailing slash), from ``config.endpoints``.

    The token endpoints come from ``compat.compat_endpoints`` (the gateway dialect).
    """
    get = frozenset({"GET", "HEAD"})
    return {
        paths.healthz: Endpoint(get, healthz),
        paths.readyz: Endpoint(get, functools.partial(readyz, auth=auth)),
        paths.client_js: Endpoint(get, client_js),
    }
