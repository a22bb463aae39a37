"""The admin API's dispatcher: every call under ``API_PREFIX`` on the admin listener passes one key check, then goes
to the endpoint its method and path name (``ENDPOINTS``).

Without admin keys (``admin.keys``, ``admin.keys_file``) the API does not exist: 404, as for any unknown path. The key
is checked before the path, so a caller without a valid key learns nothing of which endpoints exist.
"""
from __future__ import annotations

import logging

from aiohttp import web

from gateway.admin import API_PREFIX, factors, service_keys, sessions
from gateway.admin.base import AdminCall, AdminEndpoint
from gateway.errors import ErrorCode, GatewayError, error_response
from gateway.observe.audit import emit
from gateway.runtime import Gateway

__all__ = ["API_PREFIX", "ENDPOINTS", "handle_api"]


ENDPOINTS: tuple[AdminEndpoint, ...] = (*sessions.ENDPOINTS, *factors.ENDPOINTS, *service_keys.ENDPOINTS)
_TABLE = {(e.method, e.path): e for e in ENDPOINTS}
log = logging.getLogger("gateway.admin")


def _presented_key(request: web.Request) -> str | None:
    values = request.headers.getall("Authorization", [])
    if len(values) != 1:
        return None if not values else ""  # several Authorization headers: a key, but not one to trust
    scheme, _, key = values[0].partition(" ")
    return key.strip() if scheme.lower() == "bearer" else ""


async def handle_api(request: web.Request, gateway: Gateway) -> web.StreamResponse:
    """Answer one request whose path is under ``API_PREFIX``."""
    keys = gateway.runtime.admin_keys
    if not keys:
        return error_response(GatewayError(404, ErrorCode.NOT_FOUND, "Not an admin endpoint"))
    presented = _presented_key(request)
    if presented is None:
        return error_response(GatewayError.unauthorized(
            ErrorCode.ADMIN_KEY_REQUIRED, "Send an admin key as Authorization: Bearer <key>", token_presented=False))
    name = keys.identify(presented)
    if name is None:
        emit("admin.refused", request, reason="invalid_key", method=request.method, path=request.path[:200])
        return error_response(GatewayError.unauthorized(ErrorCode.ADMIN_KEY_INVALID, "This admin key is not valid"))
    path = request.path[len(API_PREFIX):].strip("/")
    endpoint = _TABLE.get((request.method, path))
    if endpoint is None:
        allowed = sorted(method for method, known in _TABLE if known == path)
        if allowed:
            return error_response(GatewayError(405, ErrorCode.METHOD_NOT_ALLOWED, f"Use {' or '.join(allowed)} here",
                                               headers={"Allow": ", ".join(allowed)}))
        return error_response(GatewayError(404, ErrorCode.NOT_FOUND, "Not an admin API endpoint"))
    try:
        return await endpoint.handler(AdminCall(request, name, gateway))
    except GatewayError as exc:
        return error_response(exc)
    except Exception:  # JSON like every other answer, never a traceback
        log.exception("admin API %s %s failed", request.method, path)
        return error_response(GatewayError(500, ErrorCode.INTERNAL_ERROR, "The admin action failed; see the gateway's log"))
