"""Sessions: login, refresh with rotation and reuse detection, verify, logout.

The operations know nothing of HTTP, so every dialect of the token endpoints
(the default one, and the compatibility profiles) shares one implementation of
the security-relevant steps.
"""
from __future__ import annotations

import dataclasses
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Protocol

from gateway.auth import jose
from gateway.auth.session_info import (
    FINGERPRINTED_SOURCES,
    SessionOrigin,
    accept_rehash,
    describe,
    password_changed,
    password_fingerprint,
    refreshed_fields,
)
from gateway.auth.throttle import LoginThrottle
from gateway.auth.tokens import Claims, TokenPair, TokenService
from gateway.config import Tokens
from gateway.config.tokens import LOGIN_CLAIMS
from gateway.errors import ErrorCode, GatewayError
from gateway.observe.audit import emit
from gateway.sources.base import SourceUnavailable, UserSource
from gateway.sources.chain import NOT_REREAD, UserChain
from gateway.sources.users import User
from gateway.stores import RotationOutcome, Store

__all__ = ["PROVIDER_SESSION", "SESSION_CLAIMS", "AuthEvents", "AuthService", "ClaimShape", "Issued", "is_text"]

MAX_LOGIN_LENGTH = 256
MAX_PASSWORD_LENGTH = 1024
SESSION_CLAIMS = "usr"  # in a refresh token: the claims of a user whose source cannot re-read users
PROVIDER_SESSION = "idp"  # in a refresh token: the identity provider whose user this is (OIDC sign-in)
UNAVAILABLE_RETRY = "5"


@dataclass(frozen=True, slots=True)
class Issued:
    """What a login or refresh hands out; ``refresh`` is None when refresh tokens do not rotate."""

    access: str
    refresh: str | None
    expires_in: int
    subject: str
    family: str  # the session's fid (cookie mode binds its CSRF token to it)
    enrolment_due: int | None = None  # a login in a second-factor enrolment grace period: its deadline (Unix seconds)

    def as_json(self) -> str:
        return json.dumps({"access": self.access, "refresh": self.refresh, "expires_in": self.expires_in,
                           "sub": self.subject, "fid": self.family})

    @classmethod
    def from_json(cls, raw: str) -> "Issued":
        data = json.loads(raw)
        # A successor stored by an instance of an older version (during a rolling upgrade) has no fid yet.
        family = data.get("fid") or jose.peek_claims(data["access"])["fid"]
        return cls(data["access"], data["refresh"], data["expires_in"], data["sub"], family)

    @classmethod
    def from_pair(cls, pair: TokenPair, *, with_refresh: bool = True) -> "Issued":
        claims = pair.access_claims
        return cls(pair.access, pair.refresh if with_refresh else None, pair.expires_in, claims["sub"], claims["fid"])


_REFUSALS = {
    RotationOutcome.REUSED: (ErrorCode.TOKEN_REUSED, "Token was already used; every token of this session is now revoked"),
    RotationOutcome.REVOKED: (ErrorCode.TOKEN_REVOKED, "Token has been revoked"),
    RotationOutcome.UNKNOWN: (ErrorCode.TOKEN_NOT_VALID, "Token belongs to no active session"),
}


def is_text(value: str) -> bool:
    """False for strings with lone surrogates (JSON allows "\\ud800"), which no hash or store can encode."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


ClaimShape = Callable[[Mapping[str, Any]], Mapping[str, Any]]  # user claims -> access-token claims


def _shaped(claims: Mapping[str, Any], shape: ClaimShape | None) -> Mapping[str, Any]:
    return claims if shape is None else shape(claims)


def identity_unavailable() -> GatewayError:
    return GatewayError(
        503, ErrorCode.IDENTITY_UNAVAILABLE, "The user directory cannot answer right now; try again shortly",
        headers={"Retry-After": UNAVAILABLE_RETRY},
    )


def _refuse(outcome: RotationOutcome) -> GatewayError:
    code, detail = _REFUSALS[outcome]
    return GatewayError.unauthorized(code, detail)


def _auth_claims(refresh_claims: Mapping[str, Any]) -> dict[str, Any]:
    """``amr``, ``auth_time``, ``acr`` and ``idp`` of the login (``LOGIN_CLAIMS``), carried by every refresh token of
    the family, never renewed."""
    return {k: refresh_claims[k] for k in sorted(LOGIN_CLAIMS) if k in refresh_claims}


def _user_claims(claims: Mapping[str, Any]) -> dict[str, Any]:
    """The user's claims without ``LOGIN_CLAIMS``: only the gateway says how the user logged in."""
    return {k: v for k, v in claims.items() if k not in LOGIN_CLAIMS}


class FactorGate(Protocol):
    """The second-factor step of a password login (gateway.factors.flow.FactorGate implements it)."""

    async def gate(self, subject: str, claims: Mapping[str, Any], extra: Mapping[str, Any] | None,
                   bound_to: str) -> int | None: ...


class AuthEvents(Protocol):
    """What the sessions report for metrics (gateway.metrics.Metrics implements it)."""

    def issued(self, grant: str) -> None: ...
    def refreshed(self, outcome: str) -> None: ...
    def revoked(self, reason: str) -> None: ...


class _NoEvents:
    def issued(self, grant: str) -> None: ...
    def refreshed(self, outcome: str) -> None: ...
    def revoked(self, reason: str) -> None: ...


class AuthService:
    def __init__(
        self,
        settings: Tokens,
        tokens: TokenService,
        users: UserChain,
        store: Store,
        throttle: LoginThrottle | None = None,
        events: AuthEvents | None = None,
    ) -> None:
        self.settings = settings
        self.tokens = tokens
        self.users = users
        self.store = store
        self.throttle = throttle
        self.events: AuthEvents = events if events is not None else _NoEvents()
        # password_change_ends_sessions: keyed by the HS256 secret when there is one (docs/admin.md)
        self._fingerprint_key = (settings.secret.get_secret_value().encode() if settings.secret is not None
                                 else b"gateway password fingerprint")
        self.factors: FactorGate | None = None  # set when second_factor is configured

    @property
    def family_ttl(self) -> float:
        """How long a family's records live: until the last access token it can mint has expired.

        A refresh (without rotation) up to ``refresh_lifetime + leeway`` after the last rotation
        mints an access token accepted ``access_lifetime + leeway`` more: its family must still be
        known then, since a token of an unknown family is refused (``Store.is_revoked``).
        """
        s = self.settings
        return s.refresh_lifetime + s.access_lifetime + 2 * s.leeway

    async def login(
        self, login: object, password: object, *, login_claim: str = "username", client_ip: str | None = None,
        shape: ClaimShape | None = None, user_agent: str | None = None, bound_to: str = "",
    ) -> Issued:
        """A new session; unknown user and wrong password are one answer, in one time.

        Logins are compared exactly as sent (no case folding or Unicode
        normalisation), so ``ａlice`` (fullwidth) is not ``alice``. With a
        throttle, failures count per login and per ``client_ip``. ``shape`` turns
        the user's claims into the access token's (a dialect's ``user_id`` claim).
        With second factors configured, a user who needs one gets 401 ``second_factor_required``
        instead (``FactorGate.gate``), for the login endpoint ``bound_to`` only.
        """
        if not isinstance(login, str) or not isinstance(password, str) or not login or not password:
            raise GatewayError.bad_request("Both a login and a password are required, as strings")
        if len(login) > MAX_LOGIN_LENGTH or len(password) > MAX_PASSWORD_LENGTH:
            raise GatewayError.bad_request("Login or password is too long")
        if not (is_text(login) and is_text(password)):
            raise GatewayError.bad_request("Login and password must be valid Unicode text")
        if self.throttle:
            async with self.throttle.checking(login, login_claim, client_ip):  # a turn first: waiting costs no slot
                await self.throttle.attempt(login, login_claim, client_ip)
                found = await self._authenticate(login, password, login_claim, client_ip)
        else:
            found = await self._authenticate(login, password, login_claim, client_ip)
        if found is None:
            emit("login.failed", subject=login, reason="invalid_credentials", login_claim=login_claim)
            raise GatewayError.unauthorized(
                ErrorCode.INVALID_CREDENTIALS, "No active account found with the given credentials", token_presented=False
            )
        user, source = found
        if self.throttle:
            await self.throttle.succeeded(login, login_claim, client_ip)
        self.users.remember(source, user)
        extra = None if source.rereads else {SESSION_CLAIMS: dict(user.claims)}
        fingerprint = None
        if self.settings.password_change_ends_sessions and source.kind in FINGERPRINTED_SOURCES and user.password_hash:
            fingerprint = password_fingerprint(self._fingerprint_key, user.password_hash)
            if user.rehashed_from:  # the gateway's own rehash_on_login: not a password change
                await accept_rehash(self.store, user.username, password_fingerprint(
                    self._fingerprint_key, user.rehashed_from), fingerprint, self.family_ttl)
        enrolment_due = None
        if self.factors is not None:  # a second factor due raises; a grace period answers its deadline
            enrolment_due = await self.factors.gate(user.username, user.claims, extra, bound_to)
        origin = SessionOrigin("password", client_ip=client_ip, user_agent=user_agent, password=fingerprint)
        issued = await self.start_session(user.username, user.claims, refresh_extra=extra, shape=shape, origin=origin,
                                          amr=("pwd",))
        return issued if enrolment_due is None else dataclasses.replace(issued, enrolment_due=enrolment_due)

    async def start_session(
        self, subject: str, claims: Mapping[str, Any], *, refresh_extra: Mapping[str, Any] | None = None,
        shape: ClaimShape | None = None, grant: str = "login", origin: SessionOrigin | None = None,
        amr: tuple[str, ...] = (), auth_time: int | None = None, acr: str | None = None, provider: str | None = None,
    ) -> Issued:
        """A new family for an authenticated ``subject``: every sign-in (password, OIDC) ends here.

        With ``PROVIDER_SESSION`` in ``refresh_extra`` the session belongs to an identity provider's
        user: refresh keeps ``SESSION_CLAIMS`` and never asks the user sources about the subject. ``origin`` (how and
        from where) is recorded for the admin API (gateway/auth/session_info.py). ``amr``, ``auth_time`` (default:
        now), ``acr`` and ``provider`` (the ``idp`` claim) are the login's, in every token of the family.
        """
        auth: dict[str, Any] = {"auth_time": int(time.time()) if auth_time is None else auth_time}
        if amr:  # RFC 8176, when the caller knows how the user proved it
            auth["amr"] = list(amr)
        if acr is not None:
            auth["acr"] = acr
        if provider is not None:
            auth["idp"] = provider
        pair = self.tokens.mint_pair(subject, {**_user_claims(_shaped(claims, shape)), **auth},
                                     refresh_extra={**(refresh_extra or {}), **auth})
        family = pair.refresh_claims["fid"]
        await self.store.start_family(family, pair.refresh_claims["jti"], self.family_ttl)
        details = (origin or SessionOrigin(grant)).fields(time.time())
        details["access_exp"] = f"{pair.access_claims['exp']:.3f}"
        await describe(self.store, family, details, self.family_ttl)
        # At most tokens.max_sessions_per_user live sessions: the oldest go, so logins cannot fill the store.
        for oldest in await self.store.track_session(subject, family, self.family_ttl,
                                                     self.settings.max_sessions_per_user):
            await self.store.revoke_family(oldest, self.family_ttl)
            self.events.revoked("session_limit")
            emit("session.revoked", subject=subject, reason="session_limit", session=oldest)
        self.events.issued(grant)
        provider = provider or (refresh_extra or {}).get(PROVIDER_SESSION)
        emit("login.succeeded", subject=subject, session=family, method="password" if grant == "login" else grant,
             provider=provider if isinstance(provider, str) else None)
        return Issued.from_pair(pair)

    async def _authenticate(
        self, login: str, password: str, login_claim: str, client_ip: str | None
    ) -> tuple[User, UserSource] | None:
        """The user and the source that decided, None for a wrong login; 503 when a source is down."""
        try:
            return await self.users.authenticate(login, password, by=login_claim)
        except SourceUnavailable:
            if self.throttle:  # the source failed, not the client: the attempt does not count
                await self.throttle.refund(login, login_claim, client_ip)
            raise identity_unavailable() from None

    async def refresh(self, token: object, *, rotate: bool | None = None, shape: ClaimShape | None = None) -> Issued:
        """A new access token; with rotation also a new refresh token, and the old one spent.

        ``rotate`` overrides ``tokens.rotate_refresh`` for one dialect: clients that never store
        a rotated refresh token must not rotate, or their next refresh looks like a reuse.
        """
        rotate = self.settings.rotate_refresh if rotate is None else rotate
        claims = self.tokens.verify(token, "refresh")
        family, jti = claims["fid"], claims["jti"]
        user, extra = await self._current_user(claims)
        auth = _auth_claims(claims)  # the login's amr, auth_time, acr and idp: a refresh never renews them
        if user is None:
            await self.store.revoke_family(family, self.family_ttl)
            self.events.revoked("user_removed")
            emit("session.revoked", subject=str(claims["sub"]), reason="user_removed", session=family)
            raise GatewayError.unauthorized(ErrorCode.TOKEN_NOT_VALID, "The user of this token no longer exists")
        if self.settings.password_change_ends_sessions and extra is None and user.password_hash:
            await self._end_if_password_changed(family, user)
        if not rotate:
            outcome = await self.store.is_current(family, jti)
            self.events.refreshed("renewed" if outcome is RotationOutcome.ROTATED else outcome.value)
            if outcome is not RotationOutcome.ROTATED:
                raise self._refused_refresh(claims, outcome)
            access, access_claims = self.tokens.mint_access(user.username, {**_user_claims(_shaped(user.claims, shape)), **auth}, family)
            self.events.issued("refresh")
            await describe(self.store, family, refreshed_fields(access_claims["exp"]), self.family_ttl)
            return Issued(access, None, int(access_claims["exp"] - access_claims["iat"]), user.username, family)
        pair = self.tokens.mint_pair(user.username, {**_user_claims(_shaped(user.claims, shape)), **auth}, family,
                                     refresh_extra={**(extra or {}), **auth})
        issued = Issued.from_pair(pair)
        rotation = await self.store.rotate(
            family, jti, pair.refresh_claims["jti"], issued.as_json(), self.family_ttl, self.settings.refresh_grace
        )
        self.events.refreshed(rotation.outcome.value)
        if rotation.outcome is RotationOutcome.ROTATED:
            self.events.issued("refresh")
            await describe(self.store, family, refreshed_fields(pair.access_claims["exp"]), self.family_ttl)
            return issued
        if rotation.outcome is RotationOutcome.GRACE and rotation.successor:
            return Issued.from_json(rotation.successor)
        raise self._refused_refresh(claims, rotation.outcome)

    def _refused_refresh(self, claims: Claims, outcome: RotationOutcome) -> GatewayError:
        """The refusal of a refresh token the store does not take, and its audit event."""
        subject, family = str(claims["sub"]), claims["fid"]
        if outcome is RotationOutcome.REUSED:
            emit("refresh.reuse_detected", subject=subject, reason="reused", session=family)
        else:
            emit("credential.refused", subject=subject, reason="revoked" if outcome is RotationOutcome.REVOKED else "invalid",
                 session=family, credential="refresh")
        return _refuse(outcome)

    async def _end_if_password_changed(self, family: str, user: User) -> None:
        """The stored hash is not the one this session began with: the password changed since, the session ends."""
        if not await password_changed(self.store, family, password_fingerprint(self._fingerprint_key, user.password_hash)):
            return
        await self.store.revoke_family(family, self.family_ttl)
        self.events.revoked("password_changed")
        emit("session.revoked", subject=user.username, reason="password_changed", session=family)
        raise GatewayError.unauthorized(ErrorCode.TOKEN_REVOKED, "The password changed since this login; log in again")

    async def _current_user(self, refresh_claims: Claims) -> tuple[User | None, dict[str, object] | None]:
        """The token's user as the sources know it now, or as its login knew it if its source cannot re-read.

        An identity provider's user (``PROVIDER_SESSION``) is never looked up: a local user of the
        same name must not take over the session.
        """
        session = refresh_claims.get(SESSION_CLAIMS)
        if isinstance(refresh_claims.get(PROVIDER_SESSION), str) and isinstance(session, dict):
            extra = {SESSION_CLAIMS: session, PROVIDER_SESSION: refresh_claims[PROVIDER_SESSION]}
            return User(refresh_claims["sub"], "", session), extra
        try:
            found = await self.users.lookup(refresh_claims["sub"])
        except SourceUnavailable:
            raise identity_unavailable() from None
        if isinstance(found, User):
            return found, None
        if found is NOT_REREAD and isinstance(session, dict):
            return User(refresh_claims["sub"], "", session), {SESSION_CLAIMS: session}
        return None, None

    async def verify(self, token: object) -> Claims:
        """Claims of a live token of either type, without spending or revoking anything."""
        claims = self.tokens.verify(token, None)
        if claims["token_type"] == "access":
            if await self.store.is_revoked(claims["fid"], claims["jti"]):
                raise GatewayError.unauthorized(ErrorCode.TOKEN_REVOKED, "Token has been revoked")
        else:
            outcome = await self.store.is_current(claims["fid"], claims["jti"])
            if outcome is RotationOutcome.REUSED:
                outcome = await self._spent_token_seen(claims["fid"], claims["jti"], str(claims["sub"]))
            if outcome is not RotationOutcome.ROTATED:
                raise _refuse(outcome) if outcome is RotationOutcome.REUSED else GatewayError.unauthorized(
                    ErrorCode.TOKEN_NOT_VALID, "Token is no longer valid"
                )
        return claims

    async def _spent_token_seen(self, family: str, jti: str, subject: str) -> RotationOutcome:
        """A spent refresh token shown at verify counts as reuse past the grace window, as at refresh.

        Otherwise a thief could test stolen refresh tokens at verify without
        consequence. The store's ``rotate`` decides, exactly as for a refresh:
        ``jti`` is not current (and never becomes current again), so it only
        answers GRACE (recently rotated) or REUSED (and then revokes the family).
        """
        rotation = await self.store.rotate(family, jti, uuid.uuid4().hex, "", self.family_ttl, self.settings.refresh_grace)
        if rotation.outcome is RotationOutcome.REUSED:
            self.events.refreshed(rotation.outcome.value)
            emit("refresh.reuse_detected", subject=subject, reason="reused", session=family, at="verify")
        return rotation.outcome

    async def logout(self, refresh: object | None, access: str | None) -> None:
        """End the session: revoke the family, and deny the presented access token until it expires."""
        if refresh is None and access is None:
            raise GatewayError.unauthorized(
                ErrorCode.AUTHENTICATION_REQUIRED, "Send the refresh token or an access token to log out", token_presented=False
            )
        ended: Claims | None = None
        if refresh is not None:
            ended = self.tokens.verify(refresh, "refresh", check_expiry=False)
            await self.store.revoke_family(ended["fid"], self.family_ttl)
            self.events.revoked("logout")
        if access is not None:
            claims = self.tokens.verify(access, "access", check_expiry=False)
            remaining = claims["exp"] - time.time() + self.settings.leeway
            if remaining > 0:
                await self.store.deny(claims["fid"], claims["jti"], remaining)
            await self.store.revoke_family(claims["fid"], self.family_ttl)
            if refresh is None:
                self.events.revoked("logout")
            ended = ended or claims
        if ended is not None:
            emit("logout", subject=str(ended["sub"]), session=ended["fid"])
