"""The path every request takes: target -> own endpoint, or route -> credentials -> policy -> header rewrite.

``dispatch`` is the application's one handler. HTTP requests and websocket
handshakes pass the same ``admit`` step, which decides everything the
upstream will be told; only then does a request go to ``upstream.http`` or
``upstream.websocket``, which carry bytes and decide nothing. No step reaches
back up the chain.
"""
from __future__ import annotations

from typing import Final

from aiohttp import web
from multidict import CIMultiDict

import gateway.rate_limit as rate_limit
from gateway.auth import basic
from gateway.auth.admission_cache import Caller, cache_key
from gateway.auth.credentials import OriginRule, authenticate
from gateway.auth.tokens import Claims
from gateway.config import Route
from gateway.context import REQUEST_ID, ROUTE_NAME, SUBJECT, state
from gateway.cors import same_origin
from gateway.decision import answer
from gateway.decision.front import Front
from gateway.dialects import ErrorStyle, error_style
from gateway.endpoints.oidc import login_answer
from gateway.endpoints.step_up import step_up_answer
from gateway.endpoints.table import Endpoint
from gateway.errors import ErrorCode, GatewayError
from gateway.forwarded import client, client_origin
from gateway.limits import websocket_slot
from gateway.net import Host
from gateway.observe.audit import emit, refusal_reason
from gateway.policy import check_requirements
from gateway.runtime import GATEWAY, RUNTIME, Gateway, Runtime
from gateway.stores.failopen import revocation_store
from gateway.target import RequestPath, parse_target, request_host
from gateway.upstream import websocket
from gateway.upstream.headers import claim_headers
from gateway.upstream.websocket import Handshake

__all__ = ["Admission", "admit", "dispatch"]


class Admission:
    """A request the gateway lets through, and everything the upstream is told about it (immutable: ``Final``, as
    ``context.Client``)."""

    __slots__ = ("route", "path", "headers", "claims", "subject", "handshake")

    def __init__(self, route: Route, path: RequestPath, headers: CIMultiDict[str], claims: Claims | None,
                 subject: str | None, handshake: Handshake | None = None) -> None:
        self.route: Final = route
        self.path: Final = path  # forwarded exactly as matched
        self.headers: Final = headers  # the upstream's: the client's cleaned, the gateway's added (a decision: its own only)
        self.claims: Final = claims  # the verified caller, None on auth: none or when optional and absent
        self.subject: Final = subject  # the caller's ``sub``, as the log, metrics and rate limits name it
        self.handshake: Final = handshake  # a websocket handshake, its token taken out of where it came


async def dispatch(request: web.Request) -> web.StreamResponse:
    gateway = request.app[GATEWAY]
    state(request)[RUNTIME] = runtime = gateway.runtime  # one snapshot for the whole request, even across a reload
    _check_framing(request)
    if runtime.decision is not None and runtime.decision.serves(request.raw_path):
        return await _decide(request, gateway, runtime, runtime.decision)
    host = request_host(request)
    path = parse_target(request.raw_path, runtime.config.paths)
    endpoint_path = path.decoded.rstrip("/") or "/"
    endpoint = runtime.endpoints.get(endpoint_path)
    if runtime.cors is not None:
        preflight = runtime.cors.screen(request, lambda method: _accepts(request, runtime, endpoint, host, path, method))
        if preflight is not None:
            return preflight
    if endpoint is not None and request.method in endpoint.methods:
        request[ROUTE_NAME] = "@" + endpoint_path  # metrics and logs label own endpoints @<path>
        return await endpoint.handler(request)
    # Methods an endpoint does not take fall through to the routes (djoser: GET users/me answered here,
    # PATCH users/me proxied); only when no route takes them either is it the endpoint's 405.
    route = runtime.router.match(request.method, host.name, path, client(request).address)
    if endpoint is not None and route is None:
        request[ROUTE_NAME] = "@" + endpoint_path
        allow = ", ".join(sorted(endpoint.methods))
        raise GatewayError(405, ErrorCode.METHOD_NOT_ALLOWED, f"Use {allow} here", headers={"Allow": allow})
    try:
        tracer = gateway.tracer
        if tracer is None:
            return await _send(request, gateway, runtime, await admit(request, gateway, runtime, host, path, route))
        with tracer.stage("admission"):
            admission = await admit(request, gateway, runtime, host, path, route)
        with tracer.stage("upstream", upstream=True) as span:
            tracer.inject(admission.headers)  # the upstream's parent is this span, never the client's own context
            response = await _send(request, gateway, runtime, admission)
            span.set_attribute("http.response.status_code", response.status)
            return response
    except GatewayError as exc:
        _audit_refusal(request, exc, route)
        refusal = _style(runtime, route).access_error(exc)
        if exc.code == ErrorCode.INSUFFICIENT_USER_AUTHENTICATION:  # navigation (cookie mode): 302; fetch: step_up_url
            return step_up_answer(request, request.raw_path, runtime.config, refusal, exc)
        if exc.status == 401 and route is not None and route.login is not None:
            return login_answer(request, runtime.config, route.login, refusal)  # navigation: 302; fetch: login_url
        return refusal


async def _send(request: web.Request, gateway: Gateway, runtime: Runtime, admission: Admission) -> web.StreamResponse:
    """The admitted request to its upstream: relayed (``upstream.http``), or a websocket (``upstream.websocket``)."""
    if admission.handshake is not None:
        with websocket_slot(request):
            return await websocket.serve(request, admission.route, admission.path, admission.handshake,
                                         admission.headers, admission.claims, gateway.upstream.session,
                                         runtime.config.tokens.leeway)
    return await gateway.upstream.forward(request, admission.route, admission.path, admission.headers)


async def admit(
    request: web.Request, gateway: Gateway, runtime: Runtime, host: Host, path: RequestPath, route: Route | None,
    forwarded: bool = True,
) -> Admission:
    """Credentials, policy and header rewrite of the matched ``route``: the one decision for HTTP and websocket alike.

    ``forwarded=False`` (decision mode): the front proxy forwards the request itself, so the admission's headers are
    only what the gateway injects (the route's claim headers, its signed identity header); every check runs the same.
    """
    if route is None:
        raise GatewayError(404, ErrorCode.NOT_FOUND, "No route matches this request")
    context = state(request)
    context[ROUTE_NAME] = route.name
    handshake = None
    if websocket.is_websocket(request):  # the token may also come in the query or a subprotocol
        if not route.websocket:
            raise GatewayError.bad_request("This route does not carry websocket upgrades")
        websocket.check_handshake(request)
        handshake = websocket.read_handshake(request, route, path.query)
    claims, injected = await _caller(request, gateway, runtime, route, handshake)
    subject = None if claims is None else str(claims.get("sub"))
    if subject is not None:
        context[SUBJECT] = subject
    if route.rate_limit is not None:
        await rate_limit.enforce(request, route, claims, gateway.store, runtime.config)
    origin = client_origin(request, host)
    if forwarded:
        headers = runtime.rewrite.headers(request, route, injected, context[REQUEST_ID], host, origin)
        if handshake is not None:
            headers = websocket.without_handshake_headers(headers)
            if route.forward_authorization and handshake.token is not None:
                headers["Authorization"] = f"Bearer {handshake.token}"
        _strip_credentials(headers, runtime, route, claims)
    else:
        headers = CIMultiDict(injected)
    if claims is not None and route.identity_jwt is not None:
        headers[route.identity_jwt.header] = runtime.signer.token_for(route, claims)
    return Admission(route, path, headers, claims, subject, handshake)


async def _caller(
    request: web.Request, gateway: Gateway, runtime: Runtime, route: Route, handshake: Handshake | None
) -> Caller:
    """The verified caller who meets the route's requirements, and the route's claim headers for them; remembered
    per (credential, route) by the admission cache where there is one (gateway/auth/admission_cache.py). Websocket
    handshakes are always checked afresh, and so are Basic routes, whose pair is no part of the cache's key
    (auth/basic.py keeps verified pairs itself)."""

    async def check() -> Caller:
        claims = await _credentials(request, gateway, runtime, route, handshake)
        if claims is not None:
            try:
                check_requirements(route, claims, runtime.config.levels)
            except GatewayError as exc:
                request[SUBJECT] = str(claims.get("sub"))  # whose credential was refused: the log and the audit event
                if route.auth == "basic":  # its 403 names Basic, not the Bearer insufficient_scope challenge
                    exc.headers.setdefault("WWW-Authenticate", basic.challenge(route))
                raise
        return claims, claim_headers(route, claims)

    if (gateway.admissions is None or handshake is not None or route.auth in ("none", "basic")
            or _service_key(request, runtime)):
        return await check()  # a service key: its own cache (auth.service_keys) bounds how long a revoked one works
    return await gateway.admissions.admitted(cache_key(request, runtime.cookies), route, check)


async def _decide(request: web.Request, gateway: Gateway, runtime: Runtime, front: Front) -> web.StreamResponse:
    """Decision mode: ``admit`` for the original request the front proxy describes, answered instead of forwarded.

    200 with the identity headers, or the refusal proxy mode would send (the
    route's error style); 404 for peers outside ``decision.allow_from``.
    """
    if not front.allowed(request):
        raise GatewayError(404, ErrorCode.NOT_FOUND, "No route matches this request")
    route = None
    asked, target = request, request.raw_path  # the original request once the front described it
    try:
        original = front.original(request)
        asked, target = original.request, original.target
        try:
            host = request_host(original.request)
            path = parse_target(original.target, runtime.config.paths)
            # the original client: the address the trusted front reports (X-Forwarded-For), as for limits
            route = runtime.router.match(original.request.method, host.name, path, client(original.request).address)
            unstripped = front.unstripped(original.request)
            if unstripped is not None:  # the app would get what proxy mode never passes: the front cannot remove it
                raise GatewayError(400, ErrorCode.HEADER_NOT_ALLOWED,
                                   f"The {unstripped} header is not accepted (the front proxy would pass it on)")
            admission = await admit(original.request, gateway, runtime, host, path, route, forwarded=False)
            if admission.handshake is not None and (admission.handshake.token_protocol is not None
                                                    or admission.handshake.query != path.query):
                raise GatewayError.bad_request(  # the front would hand the app the token where it came
                    "Behind a front proxy, a websocket sends its token in the Authorization header or the access cookie")
            cacheable = (admission.handshake is None and cache_key(original.request, runtime.cookies) is not None
                         and not runtime.router.network_dependent(admission.route)  # the front's key has no address
                         and admission.route.auth != "basic"  # nor a password in the front's cache key (on its disk)
                         and not _service_key(original.request, runtime))  # nor a service key
        finally:
            state(request).update(state(original.request))  # route, subject, rate-limit headers: the answer, log, metrics
    except GatewayError as exc:
        if not front.repeated(request):  # nginx asks twice about a refusal: one audit event
            _audit_refusal(request, exc, route)
        refusal = _style(runtime, route).access_error(exc)
        if exc.code == ErrorCode.INSUFFICIENT_USER_AUTHENTICATION:  # the original request: is it a navigation?
            refusal = step_up_answer(asked, target, runtime.config, refusal, exc, absolute=True)
        return answer.deny(refusal)
    seconds = answer.lifetime(runtime.config, admission.route, admission.claims, cacheable)
    return answer.allow(admission.route, admission.headers, seconds, front.padding)


def _audit_refusal(request: web.Request, exc: GatewayError, route: Route | None) -> None:
    """``credential.refused`` for a presented credential refused (401 with a token, 403): never for a request
    without one, never for a request let through (nothing here runs per successful request)."""
    if exc.status not in (401, 403) or (exc.status == 401 and not exc.token_presented):
        return
    if exc.code.value.startswith("service_key_"):
        emit("service_key.refused", request, reason=exc.code.value.removeprefix("service_key_"), error=str(exc.code),
             route=None if route is None else route.name)
        return
    reason = refusal_reason(exc.code)
    if reason is not None:
        emit("credential.refused", request, subject=request.get(SUBJECT), reason=reason, error=str(exc.code),
             route=None if route is None else route.name)


def _style(runtime: Runtime, route: Route | None) -> ErrorStyle:
    """A matched route's errors in its own style (routes[].errors), the rest in the main dialect (compat.errors)."""
    return runtime.errors if route is None or route.errors is None else error_style(route.errors)


async def _credentials(
    request: web.Request, gateway: Gateway, runtime: Runtime, route: Route, handshake: Handshake | None
) -> Claims | None:
    """The verified caller (``auth.credentials.authenticate``, for HTTP and websocket alike), None on ``auth: none``."""
    if route.auth == "none":
        return None
    if route.auth == "basic":
        assert runtime.basic is not None  # built for every configuration with a basic route
        return await runtime.basic.caller(request, route, _origin_rule(request, runtime))
    key = runtime.service_keys.presented(request) if runtime.service_keys is not None else None
    if key is not None and runtime.service_keys is not None:
        if not route.service_keys:
            raise GatewayError.unauthorized(ErrorCode.SERVICE_KEY_NOT_ACCEPTED, "This route does not accept service keys")
        if runtime.service_keys.in_header(request) and "Authorization" in request.headers:
            raise GatewayError.bad_request("Send a service key or an Authorization header, not both")
        return await runtime.service_keys.verify(key)
    store = revocation_store(gateway.store, request, runtime.config.store.failure_mode)
    return await authenticate(
        request, runtime.tokens, store, required=route.auth == "required", trust=runtime.issuers.for_route(route),
        cookies=runtime.cookies, handshake=(handshake.token, _origin_rule(request, runtime)) if handshake else None,
    )


def _strip_credentials(headers: CIMultiDict[str], runtime: Runtime, route: Route, claims: Claims | None) -> None:
    """Credentials no upstream gets: the gateway's cookies (they carry tokens: upstreams get identity headers
    instead), and a service key, whichever way it came (its header is in the client boundary; a bearer one here)."""
    if runtime.cookies is not None:
        runtime.cookies.strip(headers)
    if route.forward_authorization and claims is not None and "service_key" in claims:
        headers.popall("Authorization", None)


def _service_key(request: web.Request, runtime: Runtime) -> bool:
    """Whether the request presents a service key (``service_keys.header``, or a bearer that looks like one)."""
    return runtime.service_keys is not None and runtime.service_keys.presented(request) is not None


def _origin_rule(request: web.Request, runtime: Runtime) -> OriginRule:
    """Origins whose pages may use what a browser sends on its own (the access cookie on a websocket, a Basic
    pair on a write): the gateway's own, and CORS's allowed ones."""

    def origin_ok(origin: str) -> bool:
        return same_origin(request, origin) or (runtime.cors is not None and runtime.cors.allows(origin))

    return origin_ok


def _check_framing(request: web.Request) -> None:
    """Only ``chunked`` as a transfer coding: a body forwarded with any other is misread by the upstream."""
    codings = ",".join(request.headers.getall("Transfer-Encoding", []))
    if codings and [c.strip().lower() for c in codings.split(",")] != ["chunked"]:
        raise GatewayError(400, ErrorCode.BAD_REQUEST, "Only Transfer-Encoding: chunked is accepted")


def _accepts(
    request: web.Request, runtime: Runtime, endpoint: Endpoint | None, host: Host, path: RequestPath, method: str,
) -> bool:
    """Whether a request with ``method`` from this client could be served here (for CORS preflights)."""
    if endpoint is not None and method in endpoint.methods:
        return True
    return runtime.router.match(method, host.name, path, client(request).address) is not None
