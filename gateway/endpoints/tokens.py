"""Compatibility profiles: the gateway's token endpoints in the dialect a frontend already speaks.

A frontend written for SimpleJWT, djoser, a flask-jwt-extended backend or a
home-made ``/api/refresh-token`` keeps its code; only its base URL changes.
Each dialect (``config.CompatProfile``, presets filled in) decides paths,
field names, where the refresh token comes from, how errors are worded and
whether refresh tokens rotate. Every security decision stays in
``AuthService``: a dialect only translates requests and answers.

The gateway's own endpoints (``config.endpoints``) are the ``gateway`` dialect,
so cookie mode works the same on every dialect that enables it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Mapping

from aiohttp import web

from gateway.auth.cookies import CookieMode
from gateway.auth.credentials import authenticate, bearer_token
from gateway.auth.session_info import SessionOrigin
from gateway.auth.sessions import AuthService, Issued, identity_unavailable
from gateway.config import CompatProfile, GatewayConfig
from gateway.context import SUBJECT
from gateway.dialects import ErrorStyle, error_style
from gateway.endpoints.table import NO_STORE, Endpoint, json_response, read_fields, require_json
from gateway.errors import ErrorCode, GatewayError, with_fields
from gateway.factors.flow import FactorGate, PasskeyLogin, SecondFactorRequired
from gateway.forwarded import client
from gateway.observe.audit import about
from gateway.sources.base import SourceUnavailable
from gateway.sources.users import User

__all__ = ["Dialect", "compat_endpoints", "dialects"]

POST = frozenset({"POST"})
GET = frozenset({"GET", "HEAD"})
ENROLMENT_DUE = "second_factor_enrolment_due"


@dataclass(frozen=True, slots=True)
class Dialect:
    profile: CompatProfile
    rotate: bool
    errors: ErrorStyle
    cookies: CookieMode | None  # set when this dialect runs in cookie mode
    auth: AuthService  # logins, refreshes, logouts: the configuration's own

    def endpoints(self) -> dict[str, Endpoint]:
        handlers = {"login": self.login, "refresh": self.refresh, "verify": self.verify, "logout": self.logout, "me": self.me}
        return {
            path: Endpoint(GET if role == "me" else POST, _audited(handlers[role]), uncapped=role in ("refresh", "logout"))
            for role, path in self.profile.named_paths().items()
        }

    def _shape(self, claims: Mapping[str, Any]) -> Mapping[str, Any]:
        """The user's ``user_id`` under this profile's ``user_id_claim``, of its ``user_id_type``."""
        name, kind = self.profile.user_id_claim, self.profile.user_id_type
        if "user_id" not in claims or (name == "user_id" and kind == "source"):
            return claims
        shaped = {k: v for k, v in claims.items() if k != "user_id"}
        shaped[name] = _user_id(claims["user_id"], kind)
        return shaped

    @property
    def _refresh_path(self) -> str:
        return self.profile.paths.refresh or "/"

    # -- answers --------------------------------------------------------------------

    def issued_response(self, issued: Issued) -> web.Response:
        """The dialect's token answer; in cookie mode the tokens go into cookies instead of the body."""
        names = self.profile.response
        body: dict[str, Any] = {names.access: issued.access}
        if issued.refresh is not None:
            body[names.refresh] = issued.refresh
        if names.extras:
            body.update(token_type="Bearer", expires_in=issued.expires_in)
        if issued.enrolment_due is not None:  # a login in the enrolment grace period (docs/second-factor.md)
            body[ENROLMENT_DUE] = issued.enrolment_due
        if self.cookies is None:
            return json_response(body, headers=NO_STORE)
        csrf = self.cookies.csrf_token(issued.family)
        if self.cookies.settings.access_cookie:
            body.pop(names.access)
        body.pop(names.refresh, None)
        body["csrf_token"] = csrf
        response = json_response(body, headers=NO_STORE)
        self.cookies.set_session(response, issued.access, issued.refresh, csrf, self._refresh_path)
        return response

    # -- endpoints ------------------------------------------------------------------

    async def login(self, request: web.Request) -> web.Response:
        try:
            if self.cookies is not None:
                require_json(request, "the login")
            fields = await read_fields(request)
            if "mfa_token" in fields and isinstance(self.auth.factors, FactorGate):
                return await self._second_step(request, self.auth.factors, fields)
            if "passkey" in fields and isinstance(self.auth.factors, FactorGate):
                return await self._passkey(request, PasskeyLogin(self.auth.factors), fields["passkey"])
            names = self.profile.request
            missing = [n for n in (names.username, names.password) if n not in fields]
            if missing:
                return self.errors.missing_fields(missing)
            issued = await self.auth.login(
                fields[names.username], fields[names.password], login_claim=self.profile.login_claim,
                client_ip=client(request).address, shape=self._shape, user_agent=request.headers.get("User-Agent"),
                bound_to=self.profile.paths.login or "",
            )
            request[SUBJECT] = issued.subject  # for the access log
            return self.issued_response(issued)
        except SecondFactorRequired as exc:
            return with_fields(self.errors.endpoint_error(exc), {"code": exc.code.value, **exc.fields})
        except GatewayError as exc:
            return self.errors.endpoint_error(exc)

    async def _second_step(self, request: web.Request, gate: FactorGate, fields: Mapping[str, Any]) -> web.Response:
        """The mfa_token of a proven password with a TOTP ``code`` or a ``recovery_code``: the login's own answer."""
        client_ip = client(request).address
        pending = await gate.complete(fields["mfa_token"], fields.get("code"), fields.get("recovery_code"), client_ip,
                                      self.profile.paths.login or "", assertion=fields.get("webauthn"))
        origin = SessionOrigin("password", client_ip=client_ip, user_agent=request.headers.get("User-Agent"),
                               factors=tuple(m for m in pending.amr if m not in ("pwd", "mfa")))
        issued = await self.auth.start_session(pending.subject, pending.claims, refresh_extra=pending.extra, shape=self._shape,
                                               amr=pending.amr, origin=origin)
        request[SUBJECT] = issued.subject
        return self.issued_response(issued)

    async def _passkey(self, request: web.Request, passkeys: PasskeyLogin, assertion: object) -> web.Response:
        """A passkey login (docs/second-factor.md#passkey-login): the user the passkey belongs to, as the sources know it now."""
        client_ip = client(request).address
        subject, amr = await passkeys.verify(assertion, client_ip)
        try:
            found = await self.auth.users.lookup(subject)
        except SourceUnavailable:
            raise identity_unavailable() from None
        if not isinstance(found, User) or found.disabled:  # gone, disabled, or a source that cannot be read without a password
            raise GatewayError.unauthorized(ErrorCode.INVALID_CREDENTIALS, "No active account found for this passkey",
                                            token_presented=False)
        origin = SessionOrigin("passkey", client_ip=client_ip, user_agent=request.headers.get("User-Agent"),
                               factors=amr[:1])
        issued = await self.auth.start_session(subject, found.claims, shape=self._shape, amr=amr, origin=origin)
        request[SUBJECT] = issued.subject
        return self.issued_response(issued)

    async def refresh(self, request: web.Request) -> web.Response:
        from_cookie: CookieMode | None = None  # the cookie jar the token came from, if any
        try:
            token = await self._presented_refresh(request)
            if token is None and self.cookies is not None and (token := self.cookies.refresh_token(request)):
                from_cookie = self.cookies
                from_cookie.check_csrf(request, self.auth.tokens.verify(token, "refresh")["fid"])
            if token is None:
                return self._no_refresh_token()
            issued = await self.auth.refresh(token, rotate=self.rotate, shape=self._shape)
            request[SUBJECT] = issued.subject
            return self.issued_response(issued)
        except GatewayError as exc:
            response = self.errors.endpoint_error(exc)
            if from_cookie is not None and exc.status == 401:  # the cookie is dead: let the browser forget it
                from_cookie.clear(response, self._refresh_path)
            return response

    async def _presented_refresh(self, request: web.Request) -> Any:
        if self.profile.refresh_from == "bearer":
            return bearer_token(request)
        return (await read_fields(request)).get(self.profile.request.refresh)

    def _no_refresh_token(self) -> web.Response:
        if self.profile.refresh_from == "bearer":
            return self.errors.endpoint_error(GatewayError.unauthorized(
                ErrorCode.AUTHENTICATION_REQUIRED, "Send the refresh token as the bearer token", token_presented=False))
        return self.errors.missing_fields([self.profile.request.refresh])

    async def verify(self, request: web.Request) -> web.Response:
        try:
            fields = await read_fields(request)
            name = self.profile.request.token
            if name not in fields:
                return self.errors.missing_fields([name])
            await self.auth.verify(fields[name])
            return json_response({})
        except GatewayError as exc:
            return self.errors.endpoint_error(exc)

    async def logout(self, request: web.Request) -> web.Response:
        try:
            refresh, access = await self._logout_tokens(request)
            await self.auth.logout(refresh, access)
            response = json_response({}, headers=NO_STORE)
        except GatewayError as exc:
            response = self.errors.endpoint_error(exc)
            if exc.code == ErrorCode.CSRF_FAILED:
                return response
        if self.cookies is not None:
            self.cookies.clear(response, self._refresh_path)
        return response

    async def _logout_tokens(self, request: web.Request) -> tuple[Any, str | None]:
        """The refresh and access token to end the session with; cookies count only with a CSRF header."""
        if self.profile.refresh_from == "bearer":  # flask style: the bearer is either token
            refresh, access = None, bearer_token(request)
            if access is not None and self.auth.tokens.verify(access, None, check_expiry=False)["token_type"] == "refresh":
                refresh, access = access, None
        else:
            refresh, access = (await read_fields(request)).get(self.profile.request.refresh), bearer_token(request)
        if self.cookies is None:
            return refresh, access
        cookie_refresh = self.cookies.refresh_token(request) if refresh is None else None
        cookie_access = self.cookies.access_token(request) if access is None else None
        from_cookie = cookie_refresh or cookie_access
        if from_cookie:
            self.cookies.check_csrf(request, self.auth.tokens.verify(from_cookie, None, check_expiry=False)["fid"])
        return refresh or cookie_refresh, access or cookie_access

    async def me(self, request: web.Request) -> web.Response:
        try:
            claims = await authenticate(request, self.auth.tokens, self.auth.store, required=True, cookies=self.cookies)
        except GatewayError as exc:
            return self.errors.access_error(exc)
        request[SUBJECT] = str(claims.get("sub"))
        return json_response(_project(claims, self.profile.me_fields), headers=NO_STORE)


def _audited(handler: Callable[[web.Request], Awaitable[web.Response]]) -> Callable[[web.Request], Awaitable[web.Response]]:
    """The handler, with the audit events of what it calls naming its request (client, request id)."""

    async def call(request: web.Request) -> web.Response:
        with about(request):
            return await handler(request)

    return call



def _user_id(value: Any, kind: str) -> Any:
    """``string``: ``4`` -> ``"4"``; ``int``: ``"4"`` -> ``4`` (a value that is no integer stays as the source gave it)."""
    if kind == "string" and isinstance(value, (int, str)) and not isinstance(value, bool):
        return str(value)
    if kind == "int" and isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    return value


def _project(claims: Mapping[str, Any], fields: Mapping[str, str] | None) -> Mapping[str, Any]:
    """The claims as they are, or reshaped: ``{"id": "user_id|sub"}`` takes the first claim present."""
    if fields is None:
        return claims
    out = {}
    for name, alternatives in fields.items():
        for claim in alternatives.split("|"):
            if claim in claims:
                out[name] = claims[claim]
                break
    return out


def own_profile(config: GatewayConfig) -> CompatProfile:
    """The gateway dialect's profile: its paths from ``config.endpoints``."""
    e = config.endpoints
    return CompatProfile.model_validate(
        {"profile": "gateway", "paths": {"login": e.token, "refresh": e.refresh, "verify": e.verify, "logout": e.logout, "me": e.me}}
    )


def dialects(config: GatewayConfig, cookies: CookieMode | None, auth: AuthService) -> list[Dialect]:
    """The gateway's own dialect (from ``config.endpoints``) first, then every compat profile."""
    out = [Dialect(own_profile(config), config.tokens.rotate_refresh, error_style("gateway"), cookies if config.cookies.enabled else None, auth)]
    for profile in config.compat.profiles:
        rotate = config.tokens.rotate_refresh if profile.rotate_refresh is None else profile.rotate_refresh
        out.append(Dialect(profile, rotate, error_style(profile.errors), cookies if profile.cookies else None, auth))
    return out


def compat_endpoints(config: GatewayConfig, cookies: CookieMode | None, auth: AuthService) -> dict[str, Endpoint]:
    """Endpoint-table entries of every dialect (paths are unique: config validation checks it)."""
    table: dict[str, Endpoint] = {}
    for dialect in dialects(config, cookies, auth):
        table.update(dialect.endpoints())
    return table
