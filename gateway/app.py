"""The app factory, and the path every request takes through the gateway.

request -> path check -> own endpoint, or: route match -> token check ->
policy -> header rewrite -> upstream -> response. ``dispatch`` reads in that
order and no step reaches back up the chain.
"""
from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from typing import AsyncIterator, Awaitable, Callable

from aiohttp import web
from aiohttp.http import SERVER_SOFTWARE

from gateway.auth.sessions import AuthEvents, AuthService
from gateway.auth.credentials import SUBJECT
from gateway.endpoints.tokens import compat_endpoints
from gateway.config import GatewayConfig
from gateway.auth.credentials import authenticate
from gateway.auth.cookies import CookieMode
from gateway.cors import CorsPolicy
from gateway.endpoints.table import Endpoint, default_endpoints
from gateway.dialects.errors import ErrorStyle, GatewayStyle, error_style
from gateway.errors import ERROR_CODE, GatewayError, error_response
from gateway.stores.failopen import REVOCATION_SKIPPED, revocation_store
from gateway.upstream.signed_identity import DEFAULT_HEADER, IdentitySigner
from gateway.auth.issuers import Issuers
from gateway.auth.keys import KeyRing
from gateway.lifecycle import LIFECYCLE, Lifecycle
from gateway.observe.metrics import METRICS, Metrics, metrics_handler
from gateway.upstream.http import RESPONSE_BYTES, UPSTREAM_ERROR, UPSTREAM_SECONDS, Upstream, request_id
from gateway.upstream.headers import HeaderRewrite
from gateway.routing import Router, check_requirements
from gateway.target import Host, RequestPath, client_origin, is_loopback, parse_target, request_host
from gateway.sources.chain import SourceEvents, UserChain
from gateway.sources.registry import build_chain
from gateway.stores import Store, create_store
from gateway.stores.instrumented import InstrumentedStore
from gateway.stores.revocation_cache import cached_revocations
from gateway.auth.throttle import LoginThrottle
from gateway.auth.tokens import TokenService
from gateway.sources.users import UserDirectory
from gateway.endpoints.wellknown import wellknown_endpoints
from gateway.upstream.websocket_sessions import SocketSessions, watched_revocations
import gateway.rate_limit as rate_limit
import gateway.server.limits as admission
import gateway.upstream.websocket as websocket

__all__ = ["GATEWAY", "REQUEST_ID", "ROUTE_NAME", "SUBJECT", "Gateway", "Runtime", "create_app"]

log = logging.getLogger("gateway")
access_log = logging.getLogger("gateway.access")

AUTH_BODY_LIMIT = 64 * 1024
CLIENT_CLOSED = 499  # nginx's status for "client closed the connection", in logs and metrics only


@dataclass(frozen=True, slots=True)
class Runtime:
    """Everything derived from one configuration; replaced whole on reload, never mutated."""

    config: GatewayConfig
    users: UserChain
    tokens: TokenService
    auth: AuthService
    router: Router
    rewrite: HeaderRewrite
    endpoints: dict[str, Endpoint]
    issuers: Issuers
    signer: IdentitySigner
    errors: ErrorStyle = GatewayStyle()  # how proxied routes' errors look (compat.errors)
    cookies: CookieMode | None = None  # cookie mode (cookies.enabled)
    cors: CorsPolicy | None = None  # cross-origin policy (cors.allow_origins)

    @classmethod
    def build(
        cls,
        config: GatewayConfig,
        store: Store,
        users: UserDirectory | UserChain | None = None,
        events: AuthEvents | None = None,
    ) -> "Runtime":
        source_events = events if isinstance(events, SourceEvents) else None
        if not isinstance(users, UserChain):  # a users file given whole (tests), or the config's sources
            users = build_chain(config, source_events, directory=users)
        elif source_events is not None:
            users.events = source_events
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
            auth=AuthService(config.tokens, tokens, users, store, throttle, events=events),
            router=Router(config.routes, case_sensitive=config.paths.case_sensitive),
            rewrite=HeaderRewrite(
                config.routes, config.identity_header_prefixes, config.client_headers,
                trust_forwarded=config.trust_forwarded_headers, extra=signed_headers,
            ),
            endpoints={
                **default_endpoints(config.endpoints),
                **wellknown_endpoints(config, keys),
                **compat_endpoints(config, cookies),
                **ops_endpoints(config),
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


def ops_endpoints(config: GatewayConfig) -> dict[str, Endpoint]:
    """/metrics on the main listener, unless an admin listener serves it; loopback callers only unless public."""
    if not config.metrics.enabled or config.admin is not None:
        return {}
    if config.metrics.public:
        return {config.metrics.path: Endpoint(frozenset({"GET", "HEAD"}), metrics_handler)}

    async def local_metrics(request: web.Request, auth: AuthService) -> web.StreamResponse:
        if not _direct_loopback(request):
            raise GatewayError(404, "not_found", "No route matches this request")
        return await metrics_handler(request, auth)

    return {config.metrics.path: Endpoint(frozenset({"GET", "HEAD"}), local_metrics)}


def _direct_loopback(request: web.Request) -> bool:
    """A caller on this machine, not relayed by a proxy on it (which would add X-Forwarded-For or Forwarded)."""
    if "X-Forwarded-For" in request.headers or "Forwarded" in request.headers:
        return False
    return is_loopback(request.remote)


class Gateway:
    """The process-wide parts (store, upstream pool, metrics) and the runtime currently in force."""

    def __init__(
        self,
        runtime: Runtime,
        store: Store,
        upstream: Upstream,
        metrics: Metrics | None = None,
        lifecycle: Lifecycle | None = None,
    ) -> None:
        self.runtime = runtime
        self.store = store
        self.upstream = upstream
        self.metrics = metrics if metrics is not None else Metrics()
        self.lifecycle = lifecycle if lifecycle is not None else Lifecycle()
        self.swap(runtime)

    def swap(self, runtime: Runtime) -> None:
        """Put a new runtime in force; requests already running keep the one they started with."""
        self.runtime = runtime
        self.lifecycle.store_required = runtime.config.store.failure_mode == "fail_closed"


GATEWAY = web.AppKey("gateway", Gateway)
REQUEST_ID = web.RequestKey("request_id", str)
ROUTE_NAME = web.RequestKey("route", str)


async def dispatch(request: web.Request) -> web.StreamResponse:
    gateway = request.app[GATEWAY]
    runtime = gateway.runtime  # one snapshot for the whole request, even across a reload
    _check_framing(request)
    host = request_host(request)
    path = parse_target(request.raw_path, runtime.config.paths)
    endpoint_path = path.decoded.rstrip("/") or "/"
    endpoint = runtime.endpoints.get(endpoint_path)
    if runtime.cors is not None:
        preflight = runtime.cors.screen(request, lambda method: _accepts(runtime, endpoint, host, path, method))
        if preflight is not None:
            return preflight
    if endpoint is not None:
        request[ROUTE_NAME] = "@" + endpoint_path  # metrics and logs label own endpoints @<path>
        if request.method not in endpoint.methods:
            allow = ", ".join(sorted(endpoint.methods))
            raise GatewayError(405, "method_not_allowed", f"Use {allow} here", headers={"Allow": allow})
        return await endpoint.handler(request, runtime.auth)
    try:
        return await _proxy(request, gateway, runtime, host, path)
    except GatewayError as exc:
        return runtime.errors.access_error(exc)  # in the deployment's main dialect (compat.errors)


def _check_framing(request: web.Request) -> None:
    """Only ``chunked`` as a transfer coding: a body forwarded with any other is misread by the upstream."""
    codings = ",".join(request.headers.getall("Transfer-Encoding", []))
    if codings and [c.strip().lower() for c in codings.split(",")] != ["chunked"]:
        raise GatewayError(400, "bad_request", "Only Transfer-Encoding: chunked is accepted")


def _accepts(runtime: Runtime, endpoint: Endpoint | None, host: Host, path: RequestPath, method: str) -> bool:
    """Whether a request with ``method`` could be served here (for CORS preflights)."""
    if endpoint is not None:
        return method in endpoint.methods
    return runtime.router.match(method, host.name, path) is not None


async def _proxy(
    request: web.Request, gateway: Gateway, runtime: Runtime, host: Host, path: RequestPath
) -> web.StreamResponse:
    route = runtime.router.match(request.method, host.name, path)
    if route is None:
        raise GatewayError(404, "not_found", "No route matches this request")
    request[ROUTE_NAME] = route.name
    if websocket.is_websocket(request):  # the handshake takes its token from header, query or subprotocol
        return await websocket.serve(request, route, host, path, runtime, gateway)
    claims = None
    if route.auth != "none":
        claims = await authenticate(
            request,
            runtime.tokens,
            revocation_store(gateway.store, request, runtime.config.store.failure_mode),
            required=route.auth == "required",
            trust=runtime.issuers.for_route(route),
            cookies=runtime.cookies,
        )
    if claims is not None:
        request[SUBJECT] = str(claims.get("sub"))
        check_requirements(route, claims)
    if route.rate_limit is not None:
        await rate_limit.enforce(request, route, claims, gateway.store, runtime.config)
    origin = client_origin(request, runtime.config.trust_forwarded_headers, host)
    headers = runtime.rewrite.headers(request, route, claims, request[REQUEST_ID], host, origin)
    if runtime.cookies is not None:
        runtime.cookies.strip(headers)  # the gateway's cookies carry tokens: upstreams get identity headers instead
    if claims is not None and route.identity_jwt is not None:
        headers[route.identity_jwt.header] = runtime.signer.token_for(route, claims)
    return await gateway.upstream.forward(request, route, path, headers)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


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
        access_log.info(json.dumps(_access_record(request, response, duration, gateway)))


MAX_LOGGED_PATH = 2048


def _access_record(request: web.Request, response: web.StreamResponse, duration: float, gateway: Gateway) -> dict[str, object]:
    """One access-log line. Never the query string, headers or body: they may carry secrets."""
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
        "client": _client_ip(request, gateway.runtime.config.trust_forwarded_headers),
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


def _client_ip(request: web.Request, trust_forwarded: bool) -> str | None:
    """The peer, or with trusted proxies the address the nearest proxy saw (last X-Forwarded-For hop)."""
    forwarded = request.headers.get("X-Forwarded-For") if trust_forwarded else None
    if forwarded:
        return forwarded.rsplit(",", 1)[-1].strip()[:64]
    return request.remote


def _body_bytes(request: web.Request, response: web.StreamResponse) -> int:
    """Body bytes sent: counted by the proxy while streaming, else the length of the buffered body."""
    if RESPONSE_BYTES in request:
        return request[RESPONSE_BYTES]
    body = getattr(response, "body", None)
    if isinstance(body, (bytes, bytearray)):
        return len(body)
    return response.content_length or 0


async def _echo_request_id(request: web.Request, response: web.StreamResponse) -> None:
    """Every answer, proxied or the gateway's own, names the request id the upstream saw;
    and a ``Server`` header without versions unless the upstream sent its own."""
    rid = request.get(REQUEST_ID)
    if rid:
        response.headers["X-Request-Id"] = rid
    if response.headers.get("Server", SERVER_SOFTWARE) == SERVER_SOFTWARE:  # aiohttp's default names versions
        response.headers["Server"] = request.app[GATEWAY].runtime.config.server_header


async def _cors_headers(request: web.Request, response: web.StreamResponse) -> None:
    cors = request.app[GATEWAY].runtime.cors
    if cors is not None:
        cors.decorate(request, response)


def create_app(
    config: GatewayConfig, *, users: UserDirectory | UserChain | None = None, store: Store | None = None
) -> web.Application:
    """A ready-to-run gateway; ``users`` and ``store`` may be injected (tests), else built from config."""
    metrics = Metrics()
    store = store if store is not None else create_store(config.store)
    store = InstrumentedStore(store, metrics)  # type: ignore[assignment]
    revoked_ttl = config.tokens.access_lifetime + config.tokens.leeway
    store = cached_revocations(store, config.store.revocation_cache, revoked_ttl, metrics)
    sockets = SocketSessions()
    store = watched_revocations(store, sockets)  # open websockets end when their token is revoked
    gateway = Gateway(Runtime.build(config, store, users, events=metrics), store, Upstream(config.limits), metrics)
    app = web.Application(client_max_size=AUTH_BODY_LIMIT, middlewares=[errors_and_access_log, admission.admission])
    app[GATEWAY] = gateway
    guard = admission.install(app, config.limits, lambda: gateway.runtime.config.trust_forwarded_headers)
    gateway.lifecycle.saturation = lambda: admission.saturation(guard, gateway.upstream.slots)
    guard.observer = metrics.connections
    app[METRICS] = metrics
    app[LIFECYCLE] = gateway.lifecycle
    websocket.install(app, sockets)

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        await gateway.store.start()
        await gateway.upstream.start()
        await gateway.runtime.issuers.start()
        yield
        await gateway.runtime.issuers.close()
        await gateway.runtime.users.close()
        await gateway.upstream.close()
        await gateway.store.close()

    app.cleanup_ctx.append(lifecycle)
    app.on_response_prepare.append(_echo_request_id)
    rate_limit.install(app)
    app.on_response_prepare.append(_cors_headers)
    app.router.add_route("*", "/{tail:.*}", dispatch)
    return app
