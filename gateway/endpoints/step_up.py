"""Step-up (RFC 9470) at ``<second_factor.path>/step-up``: a signed-in user proves a factor again.

``GET`` is the step-up page (``step_up_page``: strict CSP, no external asset, like the sign-in page);
``POST`` takes ``code`` (TOTP), ``recovery_code`` or ``webauthn`` (an assertion answering a challenge of
``POST <path>/step-up/options``, bound to this user and this session) from a caller with a session
(bearer or, in cookie mode, the access cookie plus the CSRF header) and answers a
fresh access token of the same session family whose ``auth_time`` is now and whose
``amr`` has the factor's values. Only a factor checked here renews ``auth_time``: a
refresh keeps the login's (its refresh token carries it), so the stepped-up access
token is worth its own lifetime, which is what ``max_auth_age`` asks for anyway.

A route's 401 ``insufficient_user_authentication`` (``step_up_answer``) becomes a 302
to the page for a navigation in cookie mode and carries ``step_up_url`` in its JSON
otherwise. For a session of an OIDC provider the place is ``<endpoints.oidc>/step-up``
instead (back to the provider: ``endpoints.oidc``), unless the provider is not trusted
and the level is missing: its ``amr`` is never believed, so only a factor here helps.
``next`` follows the one rule of ``auth.redirects.safe_next``.
"""
from __future__ import annotations

import time
from typing import Any
from urllib.parse import quote

from aiohttp import web

from gateway.auth.cookies import CookieMode
from gateway.auth.credentials import authenticate
from gateway.auth.redirects import page_next, safe_next
from gateway.auth.sessions import AuthService
from gateway.config import GatewayConfig
from gateway.context import SUBJECT
from gateway.endpoints.oidc import provider_step_up_url, wants_page
from gateway.endpoints.oidc_pages import error_page
from gateway.endpoints.step_up_page import HEADERS, Offer, render
from gateway.endpoints.table import NO_STORE, Endpoint, json_response, read_fields
from gateway.errors import ErrorCode, GatewayError, with_fields
from gateway.factors.flow import FactorGate
from gateway.forwarded import client, client_origin
from gateway.observe.audit import about
from gateway.policy import StepUpRequired

__all__ = ["step_up_answer", "step_up_endpoints", "step_up_url"]

REGISTERED = frozenset({"iss", "aud", "sub", "iat", "nbf", "exp", "jti", "token_type", "fid"})



def step_up_url(config: GatewayConfig, next_url: str | None = None) -> str | None:
    """The step-up page (with ``next``), or None when second factors are not configured."""
    if config.second_factor is None:
        return None
    base = f"{config.second_factor.path}/step-up"
    return base if next_url is None else f"{base}?next={quote(next_url, safe='/')}"


def _where(config: GatewayConfig, refusal: GatewayError, here: str) -> str | None:
    """Where the caller steps up: its provider for a provider's session (trusted, or missing only a recent login: an
    untrusted provider's amr is never believed, so a level needs a factor here), else the gateway's own page."""
    if isinstance(refusal, StepUpRequired) and refusal.provider in config.oidc.providers:
        if config.oidc.providers[refusal.provider].trust_authentication or not refusal.level_unmet:
            return provider_step_up_url(config, here, refusal.max_age, refusal.level)
    return step_up_url(config, here)


def step_up_answer(request: web.Request, target: str, config: GatewayConfig, refusal: web.Response,
                   error: GatewayError, *, absolute: bool = False) -> web.Response:
    """A route's 401 insufficient_user_authentication (``error``) for ``request`` (to ``target``, its raw path and
    query): 302 to where it steps up for a navigation (cookie mode), else ``step_up_url`` in the JSON body; the
    refusal as it is when there is nowhere to step up.

    ``absolute`` (decision mode): the 302's Location names the client's origin (``public_url``, else the scheme and
    host the front reports), since some fronts (Traefik) resolve a relative Location against the gateway's address.
    """
    try:
        here = safe_next(target, config.public_url)
    except ValueError:
        here = "/"
    page = _where(config, error, here)
    if page is None:
        return refusal
    if config.cookies.enabled and wants_page(request):
        location = page
        if absolute:
            if config.public_url:
                location = config.public_url.rstrip("/") + page
            else:
                scheme, host = client_origin(request)
                location = f"{scheme}://{host}{page}"
        return web.Response(status=302, headers={"Location": location, "Cache-Control": "no-store"})
    return with_fields(refusal, {"step_up_url": page})


class StepUp:
    def __init__(self, config: GatewayConfig, gate: FactorGate, auth: AuthService, cookies: CookieMode | None) -> None:
        self.config = config
        self.gate = gate
        self.auth = auth
        self.cookies = cookies
        self.path = f"{gate.settings.path}/step-up"

    async def handle(self, request: web.Request) -> web.Response:
        if request.method == "POST":
            return await self.verify(request)
        try:
            target = page_next(request.query.getall("next", []), self.config.public_url,
                               self.config.oidc.allowed_redirect_origins) or "/"
        except ValueError as exc:
            return error_page(GatewayError(400, ErrorCode.INVALID_NEXT, str(exc)))
        settings = self.config.cookies
        text = render(self.path, target, settings.csrf_name, settings.csrf_header, await self.offer(request))
        return web.Response(text=text, content_type="text/html", headers=HEADERS)

    async def offer(self, request: web.Request) -> Offer:
        """What the page offers: the session's factors if the page was opened with one, else every kind."""
        webauthn = self.gate.passkeys is not None
        try:
            claims = await authenticate(request, self.auth.tokens, self.auth.store, required=False, cookies=self.cookies)
        except GatewayError:
            claims = None
        if claims is None:
            return Offer(() if webauthn else None, True)
        subject = str(claims["sub"])
        methods = await self.gate.credentials.methods(subject)
        names = tuple(a.name for a in await self.gate.credentials.authenticators(subject)) if webauthn else ()
        return Offer(names if names else None, "totp" in methods or not names)

    async def _session(self, request: web.Request) -> dict[str, Any]:
        claims = await authenticate(request, self.auth.tokens, self.auth.store, required=True, cookies=self.cookies)
        request[SUBJECT] = str(claims["sub"])
        return claims

    async def options(self, request: web.Request) -> web.Response:
        """A WebAuthn challenge for this user's step-up in this session (single use, ``challenge_lifetime``)."""
        claims = await self._session(request)
        options = await self.gate.step_up_options(str(claims["sub"]), str(claims["fid"]))
        return json_response({"publicKey": options}, headers=NO_STORE)

    async def verify(self, request: web.Request) -> web.Response:
        claims = await self._session(request)
        subject = str(claims["sub"])
        usable = {"totp", "webauthn"} if self.gate.passkeys is not None else {"totp"}
        if not usable & set(await self.gate.credentials.methods(subject)):
            raise GatewayError(409, ErrorCode.FACTOR_REQUIRED, f"No second factor to check: enrol one at {self.gate.settings.path}")
        fields = await read_fields(request)
        address = self.auth.throttle.client_of(request) if self.auth.throttle else client(request).address
        with about(request):  # the audit events name the request's client and id
            amr = await self.gate.reverify(subject, fields.get("code"), fields.get("recovery_code"), address,
                                           assertion=fields.get("webauthn"), family=str(claims["fid"]))
        carried = {k: v for k, v in claims.items() if k not in REGISTERED}
        old = carried.get("amr")
        merged = list(dict.fromkeys([*(old if isinstance(old, list) else []), *amr]))
        carried.update(auth_time=int(time.time()), amr=merged)
        access, minted = self.auth.tokens.mint_access(subject, carried, str(claims["fid"]))
        lifetime = int(minted["exp"] - minted["iat"])
        if self.cookies is not None and self.config.cookies.access_cookie and bearer_absent(request):
            response = json_response({"amr": merged, "auth_time": carried["auth_time"], "expires_in": lifetime}, headers=NO_STORE)
            csrf = self.cookies.csrf_token(str(claims["fid"]))
            self.cookies.set_session(response, access, None, csrf, "/")
            return response
        return json_response({"access_token": access, "token_type": "Bearer", "expires_in": lifetime, "amr": merged,
                              "auth_time": carried["auth_time"]}, headers=NO_STORE)


def bearer_absent(request: web.Request) -> bool:
    return not request.headers.get("Authorization", "").lower().startswith("bearer ")


def step_up_endpoints(config: GatewayConfig, gate: FactorGate, auth: AuthService, cookies: CookieMode | None) -> dict[str, Endpoint]:
    page = StepUp(config, gate, auth, cookies)
    return {page.path: Endpoint(frozenset({"GET", "HEAD", "POST"}), page.handle),
            f"{page.path}/options": Endpoint(frozenset({"POST"}), page.options)}
