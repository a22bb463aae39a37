"""The composition root: ``create_app`` wires store, runtime, middleware and the pipeline into one aiohttp app.

The request path itself is ``pipeline.dispatch``; what it runs on is
``runtime``; failures and the access log are ``middleware``.
"""
from __future__ import annotations

import functools
from typing import AsyncIterator, Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

import gateway.limits as limits
from gateway.auth.admission_cache import AdmissionCache, Revocations
from gateway.auth.oidc import HTTP as oidc_http
from gateway.config import GatewayConfig
from gateway.context import ANSWER_HEADERS, Handler
from gateway.lifecycle import LIFECYCLE, Lifecycle
from gateway.middleware import answer_headers, errors_and_access_log
from gateway.observe.audit_sinks import AuditSinks
from gateway.observe.metrics import METRICS, Metrics
from gateway.observe.tracing import Tracer
from gateway.pipeline import dispatch
from gateway.runtime import GATEWAY, Gateway, Runtime
from gateway.sources.chain import UserChain
from gateway.sources.users import UserDirectory
from gateway.stores import Store, create_store
from gateway.stores.instrumented import InstrumentedStore
from gateway.stores.memory import MemoryStore
from gateway.stores.revocation_cache import RevocationCache, cached_revocations, revocation_feed
from gateway.upstream import websocket
from gateway.upstream.http import Upstream
from gateway.upstream.websocket_sessions import SocketSessions, watched_revocations

__all__ = ["create_app"]

AUTH_BODY_LIMIT = 64 * 1024


Step = Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]


def _middleware(step: Step) -> Middleware:
    """``step`` as the app's middleware. aiohttp knows a middleware by an attribute on its function, which a compiled
    function cannot take (middleware.py and limits.py are compiled: docs/performance.md), so a plain one carries it.
    The serving process calls both steps directly (server/front.py); this is the app's own path (tests, the checker)."""

    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        return await step(request, handler)

    return web.middleware(middleware)


def _uncapped(gateway: Gateway, request: web.Request) -> bool:
    """A refresh or logout (any dialect): not counted per address (``Endpoint.uncapped``)."""
    endpoint = gateway.runtime.endpoints.get(request.path.rstrip("/") or "/")
    return endpoint is not None and endpoint.uncapped and request.method in endpoint.methods


def _synchronous(store: Store) -> Revocations | None:
    """A store that answers "not revoked" at once, in process (the memory store), or None."""
    return store if isinstance(store, MemoryStore) else None


def create_app(
    config: GatewayConfig, *, users: UserDirectory | UserChain | None = None, store: Store | None = None
) -> web.Application:
    """A ready-to-run gateway; ``users`` and ``store`` may be injected (tests), else built from config."""
    metrics = Metrics()
    store = raw = store if store is not None else create_store(config.store)
    feed = revocation_feed(store, metrics)  # the process's one subscription to revocations (Redis only)
    store = InstrumentedStore(store, metrics)
    revoked_ttl = config.tokens.access_lifetime + config.tokens.leeway
    store = cached_revocations(store, feed, config.store.revocation_cache, revoked_ttl, metrics)
    revocations = store if isinstance(store, RevocationCache) else None
    sockets = SocketSessions()
    store = watched_revocations(store, sockets, feed)  # open websockets end when their token is revoked
    settles: Revocations | None = revocations if revocations is not None else _synchronous(raw)
    size = config.limits.admission_cache
    admissions = AdmissionCache(settles, size) if settles is not None and size > 0 else None
    upstream = Upstream(config.limits)
    guard = limits.ConnectionGuard(config.limits, lambda: gateway.runtime.config.proxies, metrics.connections)
    phases = Lifecycle(saturation=lambda: limits.saturation(guard, upstream.slots))
    metrics.follow_in_flight(lambda: phases.in_flight)
    gateway = Gateway(Runtime.build(config, store, users, events=metrics), store, upstream, metrics, phases, admissions,
                      Tracer(config.tracing) if config.tracing.enabled else None)
    app = web.Application(client_max_size=AUTH_BODY_LIMIT,
                          middlewares=[_middleware(errors_and_access_log), _middleware(limits.admission)])
    app[GATEWAY] = gateway
    limits.install(app, guard, functools.partial(_uncapped, gateway))
    app[METRICS] = metrics
    app[LIFECYCLE] = gateway.lifecycle
    websocket.install(app, sockets)

    audit = AuditSinks(config.audit, metrics)  # audit events' own outputs (docs/audit.md): read at start only

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        await audit.start()
        await gateway.runtime.users.prepare()  # the login decoy, measured before the first login (sources/decoy.py)
        await gateway.store.start()
        if gateway.runtime.credentials is not None:  # the credentials schema is created or migrated on start
            await gateway.runtime.credentials.start()
        await gateway.upstream.start()
        await gateway.runtime.issuers.start()
        oidc_http.hold()  # the providers' kept-alive client, closed by the last app that stops
        yield
        await gateway.runtime.issuers.close()
        if gateway.runtime.oidc is not None:
            await gateway.runtime.oidc.close()
        await oidc_http.release()
        await gateway.runtime.users.close()
        if gateway.runtime.service_keys is not None:
            await gateway.runtime.service_keys.drain()  # last-use writes in flight
        if gateway.runtime.credentials is not None:
            await gateway.runtime.credentials.close()
        await gateway.upstream.close()
        await gateway.store.close()
        if gateway.tracer is not None:
            await gateway.tracer.close()
        await audit.close()

    app.cleanup_ctx.append(lifecycle)
    app[ANSWER_HEADERS] = answer_headers  # no on_response_prepare hook: see context.ANSWER_HEADERS
    app.router.add_route("*", "/{tail:.*}", dispatch)
    return app
