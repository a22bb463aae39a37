"""The admin listener: /metrics, /healthz and /readyz on a port the public never reaches; with admin keys configured,
also the admin API under /admin/api/ (gateway/admin/).

Paths follow the configuration in force (``metrics.path``, ``endpoints.healthz``,
``endpoints.readyz``), so a reload changes them here too. Admin requests are not
counted in the request metrics: scrapes and probes would drown real traffic. Every
answer carries a request id (the caller's sane ``X-Request-Id`` or a new one, as on the
public listener), which the admin API's audit events name.
"""
from __future__ import annotations

from aiohttp import web

from gateway.admin.api import API_PREFIX, handle_api
from gateway.context import REQUEST_ID
from gateway.endpoints.table import healthz, readyz
from gateway.errors import ErrorCode, GatewayError, error_response
from gateway.lifecycle import LIFECYCLE
from gateway.middleware import request_id
from gateway.observe.metrics import METRICS, metrics_handler
from gateway.runtime import Gateway

__all__ = ["create_admin_app"]


def create_admin_app(gateway: Gateway) -> web.Application:
    async def handle(request: web.Request) -> web.StreamResponse:
        runtime = gateway.runtime
        config = runtime.config
        request[REQUEST_ID] = request_id(request.headers)
        if request.path.startswith(API_PREFIX):
            return await handle_api(request, gateway)
        path = request.path.rstrip("/") or "/"
        if path not in {config.metrics.path, config.endpoints.healthz, config.endpoints.readyz}:
            return error_response(GatewayError(404, ErrorCode.NOT_FOUND, "Not an admin endpoint"))
        if request.method not in {"GET", "HEAD"}:
            return error_response(GatewayError(405, ErrorCode.METHOD_NOT_ALLOWED, "Use GET here", headers={"Allow": "GET, HEAD"}))
        if path == config.metrics.path:
            if not config.metrics.enabled:
                return error_response(GatewayError(404, ErrorCode.NOT_FOUND, "Metrics are disabled"))
            return await metrics_handler(request)
        if path == config.endpoints.healthz:
            return await healthz(request)
        return await readyz(request, runtime.auth)

    async def answer_headers(request: web.Request, response: web.StreamResponse) -> None:
        response.headers["Server"] = gateway.runtime.config.server_header
        rid = request.get(REQUEST_ID)
        if rid:
            response.headers["X-Request-Id"] = rid

    app = web.Application()
    app.on_response_prepare.append(answer_headers)
    app[METRICS] = gateway.metrics
    app[LIFECYCLE] = gateway.lifecycle
    app.router.add_route("*", "/{tail:.*}", handle)
    return app
