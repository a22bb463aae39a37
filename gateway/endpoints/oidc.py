"""The OIDC sign-in endpoints (``endpoints.oidc``): login, callback, exchange, logout,
back-channel logout, the providers list, the step-up of a provider's session at its provider
(``step-up``, checked by ``auth.oidc_step_up``); and the 302-or-401 answer of routes with ``login:``.

What the endpoints answer is the contract in docs/sign-in.md. Navigations
(login, callback, GET logout) fail with an HTML page, everything else with the
gateway's JSON errors. The flow itself (every check) is ``auth.oidc_flow``.
"""
from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlencode

from aiohttp import web
from yarl import URL

from gateway.auth.cookies import CookieMode
from gateway.auth.credentials import authenticate, bearer_token
from gateway.auth.oidc_flow import SignInFlow
from gateway.auth.redirects import safe_next
from gateway.auth.session_info import SessionOrigin
from gateway.config import GatewayConfig
from gateway.config.model import OIDC_PER_PROVIDER, OIDC_SHARED
from gateway.context import SUBJECT
from gateway.endpoints.oidc_pages import continue_page, error_page
from gateway.endpoints.table import NO_STORE, Endpoint, json_response, read_fields, require_json
from gateway.endpoints.tokens import Dialect
from gateway.errors import ErrorCode, GatewayError, error_response, with_fields
from gateway.forwarded import client
from gateway.observe.audit import about

__all__ = ["BINDING_COOKIE", "OidcEndpoints", "login_answer", "login_url", "oidc_endpoints", "provider_links",
           "provider_step_up_url", "wants_page"]

BINDING_COOKIE = "gw_oidc"
GET = frozenset({"GET", "HEAD"})
POST = frozenset({"POST"})


def redirect(location: str, **headers: str) -> web.Response:
    """A 302 (returned, not raised: the middleware sees a normal answer)."""
    return web.Response(status=302, headers={"Location": location, "Cache-Control": "no-store", **headers})


def login_url(config: GatewayConfig, login: str, next_url: str | None = None) -> str:
    """The relative URL that starts a sign-in: a provider's login, or the sign-in page (``signin``)."""
    base = config.endpoints.signin if login == "signin" else f"{config.endpoints.oidc}/{login}/login"
    return base if next_url is None else f"{base}?next={quote(next_url, safe='/')}"


def provider_step_up_url(config: GatewayConfig, next_url: str, max_age: int | None, level: str | None) -> str:
    """Where a provider's session steps up (``<endpoints.oidc>/step-up``), with what the route asks."""
    params = {"next": next_url, **({"max_age": str(max_age)} if max_age is not None else {}), **({"acr": level} if level else {})}
    return f"{config.endpoints.oidc}/step-up?" + urlencode(params, quote_via=quote, safe="/")


def provider_links(config: GatewayConfig) -> list[dict[str, str]]:
    """What ``GET <oidc>/providers`` answers, in configuration order (the sign-in page lists them too)."""
    return [{"name": name, "display_name": spec.display_name or name, "login_url": login_url(config, name)}
            for name, spec in config.oidc.providers.items()]


def wants_page(request: web.Request) -> bool:
    """A browser navigation (answered with a redirect or a page), not fetch/XHR (answered with JSON)."""
    if request.method not in ("GET", "HEAD") or "X-Requested-With" in request.headers:
        return False
    mode = request.headers.get("Sec-Fetch-Mode")
    if mode is not None:
        return mode == "navigate"
    return "text/html" in request.headers.get("Accept", "")


def login_answer(request: web.Request, config: GatewayConfig, login: str, refusal: web.Response) -> web.StreamResponse:
    """A route's 401 for a caller without a session: 302 to the login for a navigation, else ``login_url`` in the JSON."""
    try:
        here = safe_next(request.raw_path, config.public_url)
    except ValueError:
        here = "/"
    target = login_url(config, login, here)
    if wants_page(request):
        return redirect(target)
    return with_fields(refusal, {"login_url": target})


class OidcEndpoints:
    """The handlers, bound to one configuration's flow and cookie mode."""

    def __init__(self, config: GatewayConfig, flow: SignInFlow, cookies: CookieMode | None, dialect: Dialect) -> None:
        self.config = config
        self.flow = flow
        self.cookies = cookies
        self.dialect = dialect  # the gateway dialect: the exchange answers exactly like its login
        self.auth = dialect.auth
        self.prefix = config.endpoints.oidc

    def _next(self, value: Any) -> str:
        try:
            return safe_next(value, self.config.public_url, self.config.oidc.allowed_redirect_origins)
        except ValueError as exc:
            raise GatewayError(400, ErrorCode.NEXT_NOT_ALLOWED, str(exc)) from None

    def _secure(self) -> bool:
        return self.config.cookies.secure

    # -- login and callback ---------------------------------------------------------------

    async def login(self, request: web.Request, provider: str) -> web.StreamResponse:
        try:
            next_url = self._next(request.query.get("next"))
            if self.auth.throttle is not None:  # each start holds a state record: bounded per address like logins
                await self.auth.throttle.count_attempt(self.auth.throttle.client_of(request))
            deliver = "code" if request.query.get("deliver") == "code" or self.cookies is None else "cookie"
            binding, cookie = self.flow.binding_cookie(request.cookies.get(BINDING_COOKIE))
            url = await self.flow.begin(provider, next_url, deliver, binding, self.auth)
        except GatewayError as exc:
            return error_page(exc)
        response = redirect(url, **{"Referrer-Policy": "no-referrer"})
        response.set_cookie(BINDING_COOKIE, cookie, path=self.prefix, max_age=int(self.config.oidc.state_lifetime),
                            secure=self._secure(), httponly=True, samesite="Lax")
        return response

    async def callback(self, request: web.Request, provider: str) -> web.StreamResponse:
        binding = self.flow.binding_of(request.cookies.get(BINDING_COOKIE))
        try:
            origin = SessionOrigin("oidc", provider, client(request).address, request.headers.get("User-Agent"))
            done = await self.flow.complete(provider, request.query, binding, self.auth, origin)
        except GatewayError as exc:
            return error_page(exc, retry_url=login_url(self.config, provider))
        request[SUBJECT] = done.issued.subject
        if done.deliver == "code":
            code = await self.flow.code_for(done.issued, self.auth)
            target = str(URL(done.next).with_fragment(None)) + f"#gateway_code={code}"
            return redirect(target, **{"Referrer-Policy": "no-referrer"})
        assert self.cookies is not None
        strict = self.config.cookies.same_site == "Strict"
        response = continue_page(done.next) if strict else redirect(done.next)
        self.cookies.set_session(response, done.issued.access, done.issued.refresh,
                                 self.cookies.csrf_token(done.issued.family), self.config.endpoints.refresh)
        return response

    # -- step-up at the session's provider (gateway/auth/oidc_step_up.py) ---------------------

    def _step_up_params(self, request: web.Request) -> tuple[str, int | None, str | None]:
        """``next``, ``max_age`` and ``acr`` of a step-up URL (``step_up_url``), each given at most once."""
        values = {name: request.query.getall(name, []) for name in ("next", "max_age", "acr")}
        if any(len(v) > 1 for v in values.values()):
            raise GatewayError.bad_request("next, max_age and acr: each at most once")
        next_url = self._next(values["next"][0] if values["next"] else None)
        max_age = None
        if values["max_age"]:
            raw = values["max_age"][0]
            if not raw.isdigit() or len(raw) > 9:
                raise GatewayError.bad_request("max_age: a number of seconds")
            max_age = int(raw)
        level = values["acr"][0] if values["acr"] else None
        if level is not None and level not in self.config.levels:
            raise GatewayError.bad_request(f"acr: not a level here ({', '.join(self.config.levels)})")
        return next_url, max_age, level

    async def step_up(self, request: web.Request) -> web.StreamResponse:
        """GET (a navigation, the access cookie): 302 to the provider. POST (bearer, or the cookie with CSRF):
        ``{"authorization_url"}``; a bearer client gets the new access token through the one-time code."""
        page = request.method != "POST"
        try:
            next_url, max_age, level = self._step_up_params(request)
            if page and bearer_token(request) is None and (self.cookies is None or self.cookies.access_token(request) is None):
                raise GatewayError.unauthorized(ErrorCode.AUTHENTICATION_REQUIRED, "Sign in first: this page steps up a session",
                                                token_presented=False)
            claims = await authenticate(request, self.auth.tokens, self.auth.store, required=True, cookies=self.cookies)
            request[SUBJECT] = str(claims["sub"])
            if self.auth.throttle is not None:  # each start holds a state record: bounded per address like logins
                await self.auth.throttle.count_attempt(self.auth.throttle.client_of(request))
            deliver = "code" if bearer_token(request) is not None or self.cookies is None else "cookie"
            binding, cookie = self.flow.binding_cookie(request.cookies.get(BINDING_COOKIE))
            url = await self.flow.begin_step_up(claims, next_url, deliver, binding, self.auth, max_age, level)
        except GatewayError as exc:
            return error_page(exc) if page else error_response(exc)
        response = redirect(url, **{"Referrer-Policy": "no-referrer"}) if page else json_response(
            {"authorization_url": url}, headers=NO_STORE)
        response.set_cookie(BINDING_COOKIE, cookie, path=self.prefix, max_age=int(self.config.oidc.state_lifetime),
                            secure=self._secure(), httponly=True, samesite="Lax")
        return response

    # -- exchange ------------------------------------------------------------------------

    async def exchange(self, request: web.Request) -> web.StreamResponse:
        try:
            if self.cookies is not None:  # the answer sets the session cookies: no cross-site form
                require_json(request, "the code")
            fields = await read_fields(request)
            issued = await self.flow.redeem(fields.get("code"), self.auth)
        except GatewayError as exc:
            return error_response(exc)
        request[SUBJECT] = issued.subject
        return self.dialect.issued_response(issued)

    # -- logout --------------------------------------------------------------------------

    async def _end(self, refresh: Any, access: str | None, next_url: str | None) -> str | None:
        """End the session; the provider's end-session URL when its session asks for one."""
        token = refresh if isinstance(refresh, str) else access
        family = self.auth.tokens.verify(token, None, check_expiry=False)["fid"] if token else None
        await self.auth.logout(refresh, access)
        link = await self.flow.link_of(family, self.auth) if family else None
        if link is None or link.provider not in self.flow.clients or not self.config.oidc.providers[link.provider].end_session:
            return None
        return await self.flow.clients[link.provider].end_session_url(link.id_token, self._post_logout_uri(next_url))

    def _post_logout_uri(self, next_url: str | None) -> str | None:
        allowed = self.config.oidc.post_logout_redirect_uris
        if next_url is not None and self.config.public_url is not None:
            absolute = str(URL(self.config.public_url).join(URL(next_url)))
            if absolute in allowed:
                return absolute
        return allowed[0] if allowed else None

    async def logout_page(self, request: web.Request) -> web.StreamResponse:
        """GET: a navigation; ends the cookie session (logout CSRF can only log a user out)."""
        try:
            next_url = self._next(request.query.get("next"))
        except GatewayError as exc:
            return error_page(exc)
        access = self.cookies.access_token(request) if self.cookies is not None else None
        target: str | None = None
        try:
            if access is not None:
                target = await self._end(None, access, next_url)
        except GatewayError:
            pass  # a dead or foreign cookie: nothing to end, the cookies go anyway
        response = redirect(target or next_url)
        if self.cookies is not None:
            self.cookies.clear(response, self.config.endpoints.refresh)
        return response

    async def logout(self, request: web.Request) -> web.StreamResponse:
        """POST: a bearer client's (or a cookie client's, with CSRF) logout; the end-session URL in JSON."""
        try:
            fields = await read_fields(request)
            next_url = self._next(fields.get("next")) if fields.get("next") else None
            refresh, access = fields.get("refresh"), bearer_token(request)
            if refresh is None and access is None and self.cookies is not None:
                access = self.cookies.access_token(request)
                if access is not None:
                    self.cookies.check_csrf(request, self.auth.tokens.verify(access, None, check_expiry=False)["fid"])
            url = await self._end(refresh, access, next_url)
            response = json_response({"end_session_url": url}, headers=NO_STORE)
        except GatewayError as exc:
            response = error_response(exc)
            if exc.code == ErrorCode.CSRF_FAILED:
                return response
        if self.cookies is not None:
            self.cookies.clear(response, self.config.endpoints.refresh)
        return response

    # -- back-channel logout and the providers list -----------------------------------------

    async def backchannel(self, request: web.Request, provider: str) -> web.StreamResponse:
        """OIDC Back-Channel Logout 1.0 §2.8: 200 when done, 400 with an OAuth error body when not."""
        try:
            if request.content_type != "application/x-www-form-urlencoded":
                raise GatewayError(400, ErrorCode.BAD_REQUEST, "Send the logout_token as a form")
            fields = await read_fields(request)
            await self.flow.backchannel_logout(provider, fields.get("logout_token"), self.auth)
        except GatewayError as exc:
            if exc.status in (502, 503, 504):  # the provider's keys could not be had: let it retry
                return error_response(exc)
            body = {"error": "invalid_request", "error_description": exc.detail}
            return json_response(body, status=400, headers=NO_STORE)
        return web.Response(status=200, headers=NO_STORE)

    async def providers(self, request: web.Request) -> web.StreamResponse:
        return json_response(provider_links(self.config), headers={"Cache-Control": "no-cache"})


def _bind(handler: Any, provider: str) -> Any:
    async def call(request: web.Request) -> web.StreamResponse:
        with about(request):  # audit events of the sign-in name this request
            return await handler(request, provider)  # type: ignore[no-any-return]

    return call


def oidc_endpoints(config: GatewayConfig, flow: SignInFlow, cookies: CookieMode | None, dialect: Dialect) -> dict[str, Endpoint]:
    """The endpoint-table entries: three per provider, three shared (none without providers)."""
    if not config.oidc.enabled:
        return {}
    e = OidcEndpoints(config, flow, cookies, dialect)
    per_provider = {"login": (GET, e.login), "callback": (GET, e.callback), "backchannel-logout": (POST, e.backchannel)}
    assert set(per_provider) == set(OIDC_PER_PROVIDER)
    table = {
        f"{e.prefix}/{name}/{what}": Endpoint(methods, _bind(handler, name))
        for name in config.oidc.providers for what, (methods, handler) in per_provider.items()
    }

    async def logout(request: web.Request) -> web.StreamResponse:
        with about(request):
            return await (e.logout(request) if request.method == "POST" else e.logout_page(request))

    async def exchange(request: web.Request) -> web.StreamResponse:
        with about(request):
            return await e.exchange(request)

    async def step_up(request: web.Request) -> web.StreamResponse:
        with about(request):
            return await e.step_up(request)

    shared = {"exchange": Endpoint(POST, exchange), "logout": Endpoint(GET | POST, logout),
              "providers": Endpoint(GET, e.providers), "step-up": Endpoint(GET | POST, step_up)}
    assert set(shared) == set(OIDC_SHARED)
    table.update({f"{e.prefix}/{what}": endpoint for what, endpoint in shared.items()})
    return table

