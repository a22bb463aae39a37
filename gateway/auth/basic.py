"""HTTP Basic on routes with ``auth: basic``: a user and password per request, for clients that cannot hold a token.

Scripts, WebDAV mounts and old devices send ``Authorization: Basic`` on every
request. The pair is checked as a login checks it (the user sources'
``UserChain.authenticate``, counted by the login throttle per login and per
address, 429 with Retry-After past its limits), and the caller's claims are
the ones a login would put in its access token: the user's claims, ``sub``
its name, the gateway's ``iss`` and ``aud``, so a route's ``headers`` and
``require`` work the same.

A verified pair is remembered for ``basic_auth.cache_lifetime``, so a client
does not pay the password hash (argon2: tens of milliseconds, and CPU) on
each request. The cache holds no password: its key is HMAC-SHA256 of
``user:password`` under a random key of this process (and this
configuration: a reload starts empty), so a wrong password is another key
and never meets a cached success, and a leaked entry reveals nothing that
can be checked offline. A password changed or a user disabled in the source
takes effect when the entry ends. Only password checks count against the
throttle: a cached pair costs nothing but the HMAC. Requests that bring the
same pair while it is being checked (a WebDAV client opens several
connections at once) wait for that one check and share its answer, so a cold
cache costs one password check, not one per connection.

A browser that was given a pair sends it on its own, to any page's requests,
as it sends cookies: a state-changing request (not GET, HEAD, OPTIONS or
TRACE) whose ``Origin`` is neither the gateway's own nor one CORS allows is a
403 ``origin_not_allowed`` before any password is looked at, so another site
cannot make a signed-in browser write through a basic route. Scripts and
WebDAV clients send no ``Origin``.

Malformed credentials (not base64, not UTF-8, no colon, control characters,
too long) are a 400; none at all, another scheme, or a wrong pair a 401
carrying ``WWW-Authenticate: Basic realm="...", charset="UTF-8"``. The
``Authorization`` header never reaches the upstream (the header rewrite
removes it; a basic route cannot forward it).
"""
from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import secrets
import time
from typing import Callable

from aiohttp import web

from gateway.auth.cookies import SAFE_METHODS
from gateway.auth.sessions import MAX_LOGIN_LENGTH, MAX_PASSWORD_LENGTH, identity_unavailable
from gateway.auth.throttle import LoginThrottle
from gateway.auth.tokens import Claims
from gateway.config import Route, Tokens
from gateway.config.basic import BasicAuthSettings
from gateway.errors import REALM, ErrorCode, GatewayError
from gateway.forwarded import client
from gateway.sources.base import SourceUnavailable
from gateway.sources.chain import UserChain
from gateway.ttl import TTLMap

__all__ = ["BasicAuth", "challenge"]

BY = "username"  # what the user part of the pair names, as at the login endpoint
_MAX_ENCODED = 4 * (MAX_LOGIN_LENGTH * 4 + MAX_PASSWORD_LENGTH * 4 + 1) // 3 + 4  # UTF-8 at its widest, base64


def challenge(route: Route) -> str:
    """The route's ``WWW-Authenticate`` (RFC 7617): its realm (validated at load: no quote, no backslash), UTF-8."""
    return f'Basic realm="{route.basic_realm or REALM}", charset="UTF-8"'


def _unauthorized(route: Route, code: ErrorCode, detail: str) -> GatewayError:
    return GatewayError(401, code, detail, headers={"WWW-Authenticate": challenge(route)})


def credentials(request: web.Request, route: Route) -> tuple[str, str]:
    """The user and password of the request's ``Authorization: Basic`` header; 401 without one, 400 when malformed."""
    values = request.headers.getall("Authorization", [])
    if not values:
        raise _unauthorized(route, ErrorCode.AUTHENTICATION_REQUIRED, "Authentication credentials were not provided")
    if len(values) > 1:
        raise GatewayError.bad_request("More than one Authorization header")
    scheme, _, encoded = values[0].strip().partition(" ")
    if scheme.lower() != "basic":
        raise _unauthorized(route, ErrorCode.AUTHENTICATION_REQUIRED, "This route takes HTTP Basic credentials")
    encoded = encoded.strip()
    if len(encoded) > _MAX_ENCODED:
        raise GatewayError.bad_request("Login or password is too long")
    try:
        text = base64.b64decode(encoded, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):  # UnicodeDecodeError is a ValueError
        raise GatewayError.bad_request("The Basic credentials are not base64 of UTF-8 text") from None
    user, colon, password = text.partition(":")
    if not colon:
        raise GatewayError.bad_request("The Basic credentials need a colon between user and password")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in user) or any(ord(c) < 0x20 or ord(c) == 0x7F for c in password):
        raise GatewayError.bad_request("The Basic credentials contain control characters")
    if len(user) > MAX_LOGIN_LENGTH or len(password) > MAX_PASSWORD_LENGTH:
        raise GatewayError.bad_request("Login or password is too long")
    if not user or not password:
        raise _unauthorized(route, ErrorCode.INVALID_CREDENTIALS, "No active account found with the given credentials")
    return user, password


class BasicAuth:
    """The verified pairs of one configuration's ``auth: basic`` routes, and how a pair is verified."""

    def __init__(self, settings: BasicAuthSettings, tokens: Tokens, users: UserChain, throttle: LoginThrottle | None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.tokens = tokens
        self.users = users
        self.throttle = throttle
        self.clock = clock
        self._key = secrets.token_bytes(32)  # this process's: entries mean nothing anywhere else
        self._verified: TTLMap[bytes, Claims] = TTLMap(settings.cache_size)
        self._checking: dict[bytes, asyncio.Future[Claims]] = {}  # pairs whose check is running, by cache key
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._verified)

    def _cache_key(self, user: str, password: str) -> bytes:
        return hmac.new(self._key, f"{user}:{password}".encode(), hashlib.sha256).digest()

    async def caller(self, request: web.Request, route: Route, origin_ok: Callable[[str], bool]) -> Claims:
        """The claims of the request's Basic user (see the module docstring); ``origin_ok`` says whether a page of
        an origin may write with the browser's pair (the gateway's own origin and CORS's allowed ones)."""
        origin = request.headers.get("Origin")
        if request.method not in SAFE_METHODS and origin is not None and not origin_ok(origin):
            raise GatewayError(403, ErrorCode.ORIGIN_NOT_ALLOWED,
                               "A page of another origin may not send Basic credentials to this route")
        user, password = credentials(request, route)
        key = self._cache_key(user, password)
        now = self.clock()
        cached = self._verified.get(key, now)
        if cached is not None:
            self.hits += 1
            return cached
        running = self._checking.get(key)
        if running is not None:
            try:
                return await asyncio.shield(running)  # the same pair's check, and its answer (a refusal too)
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if not running.cancelled() or (task is not None and task.cancelling()):
                    raise  # this request was cancelled, not (only) the check
                # the request that ran the check went away: check here instead
        self.misses += 1
        running = self._checking[key] = asyncio.get_running_loop().create_future()
        try:
            claims = await self._verify(user, password, client(request).address, route)
        except asyncio.CancelledError:
            running.cancel()
            raise
        except Exception as exc:
            running.set_exception(exc)
            running.exception()  # retrieved: nobody need be waiting for it
            raise
        finally:
            if self._checking.get(key) is running:
                del self._checking[key]
        running.set_result(claims)
        if self.settings.cache_lifetime > 0:
            self._verified.put(key, claims, self.clock() + self.settings.cache_lifetime)
        return claims

    async def _verify(self, login: str, password: str, address: str, route: Route) -> Claims:
        """The pair checked against the user sources, within the login throttle, as ``AuthService.login`` does."""
        throttle = self.throttle
        try:
            if throttle is None:
                found = await self.users.authenticate(login, password, by=BY)
            else:
                async with throttle.checking(login, BY, address):  # a turn first: waiting costs no slot
                    await throttle.attempt(login, BY, address)
                    try:
                        found = await self.users.authenticate(login, password, by=BY)
                    except SourceUnavailable:
                        await throttle.refund(login, BY, address)  # the source failed, not the client
                        raise
        except SourceUnavailable:
            raise identity_unavailable() from None
        if found is None:
            raise _unauthorized(route, ErrorCode.INVALID_CREDENTIALS, "No active account found with the given credentials")
        user, _source = found
        if throttle is not None:
            await throttle.succeeded(login, BY, address)
        now = int(time.time())
        claims: Claims = dict(user.claims)
        claims.update(iss=self.tokens.issuer, aud=self.tokens.audience, sub=user.username, iat=now,
                      exp=now + int(self.tokens.access_lifetime), jti=secrets.token_hex(16))
        return claims

    def clear(self) -> None:
        self._verified.clear()
