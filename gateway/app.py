"""The app factory, and the path every request takes through the gateway.

request -> path check -> own endpoint, or: route match -> token check ->
policy -> header rewrite -> upstream -> response. ``dispatch`` reads in that
order and no step reaches back up the chain.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import AsyncIterator, Awaitable, Callable

from aiohttp import web

from .auth import AuthService
from .compat import compat_endpoints
from .config import GatewayConfig
from .authenticate import authenticate
from .cookies import CookieMode
from .cors import CorsPolicy
from .endpoints import Endpoint, default_endpoints
from .error_styles import ErrorStyle, GatewayStyle, error_style
from .errors import GatewayError, error_response
from .identity import DEFAULT_HEADER, IdentitySigner
from .issuers import Issuers
from .keys import KeyRing
from .proxy import IdentityHeaders, Upstream, request_id, upstream_headers
from .routing import RequestPath, Router, check_requirements, parse_target
from .stores import Store, create_store
from .throttle import LoginThrottle
from .tokens import TokenService
from .users import UserDirectory, load_users
from .wellknown import wellknown_endpoints
from . import websocket

__all__ = ["GATEWAY", "REQUEST_ID", "ROUTE_NAME", "SUBJECT", "Gateway", "Runtime", "create_app"]

log = logging.getLogger("gateway")
access_log = logging.getLogger("gateway.access")

AUTH_BODY_LIMIT = 64 * 1024


@dataclass(frozen=True, slots=True)
class Runtime:
    """Everything derived from one configuration; replaced whole on reload, never mutated."""

    config: GatewayConfig
    users: UserDirectory
    tokens: TokenService
    auth: AuthService
    router: Router
    identity: IdentityHeaders
    endpoints: dict[str, Endpoint]
    issuers: Issuers
    signer: IdentitySigner
    errors: ErrorStyle = GatewayStyle()  # how proxied routes' errors look (compat.errors)
    cookies: CookieMode | None = None  # cookie mode (cookies.enabled)
    cors: CorsPolicy | None = None  # cross-origin policy (cors.allow_origins)

    @classmethod
    def build(cls, config: GatewayConfig, store: Store, users: UserDirectory | None = None) -> "Runtime":
        users = users if users is not None else load_users(config.users_file)
        keys = KeyRing.from_config(config.tokens)
        tokens = TokenService(config.tokens, keys)
        throttle = None
        if config.login_throttle.enabled:
            throttle = LoginThrottle(config.login_throttle, store, trust_forwarded=config.trust_forwarded_headers)
        signed_headers = {DEFAULT_HEADER} | {r.identity_jwt.header for r in config.routes if r.identity_jwt}
        cookies = None
        if config.cookies.enabled:
            cookies = CookieMode(config.cookies, config.cookies.csrf_key(config.tokens), config.tokens.refresh_lifetime)
        return cls(
            config=config,
            users=users,
            tokens=tokens,
            auth=AuthService(config.tokens, tokens, users, store, throttle),
            router=Router(config.routes),
            identity=IdentityHeaders(config.routes, config.identity_header_prefixes, extra=signed_headers),
            endpoints={
                **default_endpoints(config.endpoints),
                **wellknown_endpoints(config, keys),
                **compat_endpoints(config, cookies),
            },
            issuers=Issuers(config),
            signer=IdentitySigner(keys, config.tokens.issuer),
            errors=error_style(config.compat.errors),
            cookies=cookies,
            cors=_cors(config),
        )


def _cors(config: GatewayConfig) -> CorsPolicy | None:
    if not config.cors.enabled:
        return None
    csrf = (config.cookies.csrf_header,) if config.cookies.enabled else ()
    return CorsPolicy(config.cors, trust_forwarded=config.trust_forwarded_headers, extra_headers=csrf)


class Gateway:
    """The process-wide parts (store, upstream pool) and the runtime currently in force."""

    def __init__(self, runtime: Runtime, store: Store, upstream: Upstream) -> None:
        self.runtime = runtime
        self.store = store
        self.upstream = upstream


GATEWAY = web.AppKey("gateway", Gateway)
REQUEST_ID = web.RequestKey("request_id", str)
ROUTE_NAME = web.RequestKey("route", str)
SUBJECT = web.RequestKey("sub", str)


async def dispatch(request: web.Request) -> web.StreamResponse:
    gateway = request.app[GATEWAY]
    runtime = gateway.runtime  # one snapshot for the whole request, even across a reload
    path = parse_target(request.raw_path)
    endpoint = runtime.endpoints.get(path.decoded.rstrip("/") or "/")
    if runtime.cors is not None:
        preflight = runtime.cors.screen(request, lambda method: _accepts(runtime, request, endpoint, path, method))
        if preflight is not None:
            return preflight
    if endpoint is not None:
        if request.method not in endpoint.methods:
            allow = ", ".join(sorted(endpoint.methods))
            raise GatewayError(405, "method_not_allowed", f"Use {allow} here", headers={"Allow": allow})
        return await endpoint.handler(request, runtime.auth)
    try:
        return await _proxy(request, gateway, runtime, path)
    except GatewayError as exc:
        return runtime.errors.access_error(exc)  # in the deployment's main dialect (compat.errors)


def _accepts(runtime: Runtime, request: web.Request, endpoint: Endpoint | None, path: RequestPath, method: str) -> bool:
    """Whether a request with ``method`` could be served here (for CORS preflights)."""
    if endpoint is not None:
        return method in endpoint.methods
    return runtime.router.match(method, request.host, path) is not None


async def _proxy(request: web.Request, gateway: Gateway, runtime: Runtime, path: RequestPath) -> web.StreamResponse:
    route = runtime.router.match(request.method, request.host, path)
    if route is None:
        raise GatewayError(404, "not_found", "No route matches this request")
    request[ROUTE_NAME] = route.name
    if websocket.is_websocket(request):  # the handshake takes its token from header, query or subprotocol
        return await websocket.serve(request, route, path, runtime, gateway)
    claims = None
    if route.auth != "none":
        claims = await authenticate(
            request,
            runtime.tokens,
            gateway.store,
            required=route.auth == "required",
            trust=runtime.issuers.for_route(route),
            cookies=runtime.cookies,
        )
    if claims is not None:
        request[SUBJECT] = str(claims.get("sub"))
        check_requirements(route, claims)
    headers = upstream_headers(
        request, route, runtime.identity, claims, request[REQUEST_ID], runtime.config.trust_forwarded_headers
    )
    if runtime.cookies is not None:
        runtime.cookies.strip(headers)  # the gateway's cookies carry tokens: upstreams get identity headers instead
    if claims is not None and route.identity_jwt is not None:
        headers[route.identity_jwt.header] = runtime.signer.token_for(route, claims)
    return await gateway.upstream.forward(request, route, path, headers)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def errors_and_access_log(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn every failure into a JSON answer and write one access-log line per request."""
    started = time.perf_counter()
    request[REQUEST_ID] = rid = request_id(request.headers)
    try:
        response = await handler(request)
    except GatewayError as exc:
        response = error_response(exc)
    except web.HTTPException as exc:  # raised by aiohttp itself, e.g. 413 for an oversized body
        code = "bad_request" if exc.status < 500 else "internal_error"
        response = error_response(GatewayError(exc.status, code, exc.reason))
    except Exception:
        log.exception("unhandled error (request id %s)", rid)
        response = error_response(GatewayError(500, "internal_error", "Internal error; see the gateway log"))
    _log_access(request, response, time.perf_counter() - started)
    return response


async def _echo_request_id(request: web.Request, response: web.StreamResponse) -> None:
    """Every answer, proxied or the gateway's own, names the request id the upstream saw."""
    rid = request.get(REQUEST_ID)
    if rid:
        response.headers["X-Request-Id"] = rid


async def _cors_headers(request: web.Request, response: web.StreamResponse) -> None:
    cors = request.app[GATEWAY].runtime.cors
    if cors is not None:
        cors.decorate(request, response)


def _log_access(request: web.Request, response: web.StreamResponse, duration: float) -> None:
    if not access_log.isEnabledFor(logging.INFO):
        return
    access_log.info(
        json.dumps(
            {
                "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "request_id": request.get(REQUEST_ID),
                "method": request.method,
                "path": request.path,  # never the query string: it may carry secrets
                "route": request.get(ROUTE_NAME),
                "status": response.status,
                "duration_ms": round(duration * 1000, 2),
                "sub": request.get(SUBJECT),
                "client": request.remote,
                "bytes": response.body_length,
            }
        )
    )


def create_app(config: GatewayConfig, *, users: UserDirectory | None = None, store: Store | None = None) -> web.Application:
    """A ready-to-run gateway; ``users`` and ``store`` may be injected (tests), else built from config."""
    store = store if store is not None else create_store(config.store)
    gateway = Gateway(Runtime.build(config, store, users), store, Upstream())
    app = web.Application(client_max_size=AUTH_BODY_LIMIT, middlewares=[errors_and_access_log])
    app[GATEWAY] = gateway
    websocket.install(app)

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        await gateway.store.start()
        await gateway.upstream.start()
        await gateway.runtime.issuers.start()
        yield
        await gateway.runtime.issuers.close()
        await gateway.upstream.close()
        await gateway.store.close()

    app.cleanup_ctx.append(lifecycle)
    app.on_response_prepare.append(_echo_request_id)
    app.on_response_prepare.append(_cors_headers)
    app.router.add_route("*", "/{tail:.*}", dispatch)
    return app
