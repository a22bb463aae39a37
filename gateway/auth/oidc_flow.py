"""The sign-in flow without HTTP: begin (state, nonce, PKCE), complete (every check, then the
gateway's own session), the one-time SPA code, logout links and back-channel logout.

State lives in the store, keyed by the hash of the ``state`` value and taken
exactly once (GETDEL): a replayed, forged or expired state finds nothing. It is
bound to the browser that began the sign-in: the record holds the hash of a
random binding value whose HMAC-signed copy sits in a short-lived HttpOnly
``SameSite=Lax`` cookie, so a state (or a whole callback URL) carried to
another browser is refused (login CSRF / session fixation). The nonce and the
PKCE verifier ride in the same record, so they are single-use with it.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import time
from dataclasses import dataclass, replace
from typing import Any, Mapping, Protocol, runtime_checkable

from gateway.auth.oidc import ProviderClient, pkce_pair
from gateway.auth.oidc_identity import missing_claims, resolve_identity
from gateway.auth.oidc_step_up import StepUpRequest, check_step_up, login_facts
from gateway.auth.oidc_tokens import LOGOUT_TOKEN_MAX_AGE, validate_id_token, validate_logout_token
from gateway.auth.session_info import SessionOrigin
from gateway.auth.sessions import AuthService, Issued
from gateway.config import ConfigError, GatewayConfig
from gateway.config.model import oidc_state_key
from gateway.errors import ErrorCode, GatewayError
from gateway.observe.audit import emit

__all__ = ["Completed", "OidcEvents", "SessionLink", "SignInFlow"]

log = logging.getLogger("gateway.auth.oidc")

MAX_PARAM = 2048  # code, state and iss parameters longer than this are refused unread


@runtime_checkable
class OidcEvents(Protocol):
    """What the flow reports (gateway.observe.metrics.Metrics implements it)."""

    def oidc_login(self, provider: str, result: str) -> None: ...


class _NoEvents:
    def oidc_login(self, provider: str, result: str) -> None: ...


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _bad_state(detail: str) -> GatewayError:
    return GatewayError(400, ErrorCode.STATE_INVALID, detail)


@dataclass(frozen=True, slots=True)
class Completed:
    issued: Issued
    next: str
    deliver: str  # "cookie" or "code"


@dataclass(frozen=True, slots=True)
class SessionLink:
    """What a session started by a provider remembers for logout."""

    provider: str
    sid: str | None
    sub: str
    id_token: str

    def as_json(self) -> str:
        return json.dumps({"p": self.provider, "sid": self.sid, "sub": self.sub, "idt": self.id_token})

    @classmethod
    def from_json(cls, raw: str) -> "SessionLink":
        data = json.loads(raw)
        return cls(data["p"], data.get("sid"), data["sub"], data["idt"])


def _sid_index(provider: str, sid: str) -> str:
    return f"oidc:sid:{provider}:{sid}"


def _sub_index(provider: str, sub: str) -> str:
    return f"oidc:sub:{provider}:{sub}"


class SignInFlow:
    """Every configured provider's client and the flow's secrets; built with the runtime."""

    def __init__(self, config: GatewayConfig, events: object = None) -> None:
        self.config = config
        self.settings = config.oidc
        self.events: OidcEvents = events if isinstance(events, OidcEvents) else _NoEvents()
        key = oidc_state_key(config) or b""
        self._key = hmac.new(key, b"gateway oidc state binding", hashlib.sha256).digest()
        self.clients: dict[str, ProviderClient] = {}
        self._secrets: dict[str, str | None] = {}
        self._reported: dict[str, set[str]] = {}  # mapped claims already logged as not released, per provider
        problems: list[str] = []
        for name, spec in self.settings.providers.items():
            client = ProviderClient(name, spec, self.settings.timeout, self.settings.discovery_ttl)
            self._secrets[name] = spec.client_secret.get_secret_value() if spec.client_secret else None
            try:
                if spec.client_secret_file is not None:
                    self._secrets[name] = spec.client_secret_file.read_text().strip()
                if spec.private_key_file is not None:
                    client.load_private_key(spec.private_key_file.read_bytes())
            except (OSError, ValueError, TypeError) as exc:
                problems.append(f"oidc.providers.{name}: cannot read its secret or key ({type(exc).__name__})")
            self.clients[name] = client
        if problems:
            raise ConfigError(problems)

    def client(self, provider: str) -> ProviderClient:
        return self.clients[provider]

    def redirect_uri(self, provider: str) -> str:
        assert self.config.public_url is not None  # config validation requires it with providers
        return f"{self.config.public_url}{self.config.endpoints.oidc}/{provider}/callback"

    # -- the browser binding -----------------------------------------------------------

    def _sign(self, binding: str) -> str:
        return hmac.new(self._key, binding.encode(), hashlib.sha256).hexdigest()[:32]

    def binding_cookie(self, presented: str | None) -> tuple[str, str]:
        """The browser's binding and the cookie value carrying it: the presented one if genuine, else new."""
        binding = self.binding_of(presented)
        if binding is None:
            binding = secrets.token_urlsafe(24)
        return binding, f"{binding}.{self._sign(binding)}"

    def binding_of(self, cookie: str | None) -> str | None:
        binding, _, signature = (cookie or "").partition(".")
        if binding and hmac.compare_digest(signature, self._sign(binding)):
            return binding
        return None

    # -- begin and complete ---------------------------------------------------------------

    async def begin(self, provider: str, next_url: str, deliver: str, binding: str, auth: AuthService,
                    step_up: StepUpRequest | None = None, extra: Mapping[str, str] | None = None) -> str:
        """The provider's authorization URL; the state record waits in the store. With ``step_up``, the callback
        renews that session's access token instead of starting a session (``extra``: its request parameters)."""
        client = self.clients[provider]
        state, nonce = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        verifier, challenge = pkce_pair()
        url = await client.authorization_url(self.redirect_uri(provider), state, nonce, challenge, extra)
        record: dict[str, Any] = {"p": provider, "n": nonce, "v": verifier, "next": next_url, "d": deliver,
                                  "b": _digest(binding)}
        if step_up is not None:
            record["su"] = step_up.as_record()
        await auth.store.put_once(f"oidc:state:{_digest(state)}", json.dumps(record), self.settings.state_lifetime)
        return url

    async def begin_step_up(self, claims: Mapping[str, Any], next_url: str, deliver: str, binding: str, auth: AuthService,
                            max_age: int | None, level: str | None) -> str:
        """The authorization URL of a step-up for the session of ``claims`` (a verified access token), at the
        provider that signed it in; 400 for a session that no provider signed in."""
        link = await self.link_of(str(claims["fid"]), auth)
        if link is None or link.provider not in self.clients:
            raise GatewayError(400, ErrorCode.BAD_REQUEST, "This session was not signed in by an identity provider")
        request = StepUpRequest(str(claims["fid"]), str(claims["sub"]), link.sub, claims, int(time.time()), max_age, level)
        level_met = level is None or claims.get("acr") == level or bool(
            set(self.config.levels.get(level, ())) & set(claims.get("amr") or ()))
        params = request.params(self.settings.providers[link.provider], level_met)
        return await self.begin(link.provider, next_url, deliver, binding, auth, request, params)

    async def _take_state(self, provider: str, query: Mapping[str, str], binding: str | None, auth: AuthService) -> dict[str, Any]:
        state = query.get("state")
        if not state or len(state) > MAX_PARAM:
            raise _bad_state("The sign-in answer carries no state")
        raw = await auth.store.take(f"oidc:state:{_digest(state)}")  # once: a second callback finds nothing
        if raw is None:
            raise _bad_state("This sign-in is unknown, expired or already used; start again")
        record: dict[str, Any] = json.loads(raw)
        if binding is None or not hmac.compare_digest(record["b"], _digest(binding)):
            raise _bad_state("This sign-in was started in another browser; start again")
        if record["p"] != provider:
            raise _bad_state("This sign-in was started with another provider")
        return record

    async def complete(self, provider: str, query: Mapping[str, str], binding: str | None, auth: AuthService,
                       origin: SessionOrigin | None = None) -> Completed:
        """Every check of the callback, then the gateway's own session; failures are counted by reason.

        ``origin`` (the browser's address and user agent) is recorded with the session for the admin API.
        """
        try:
            completed = await self._complete(provider, query, binding, auth, origin or SessionOrigin("oidc"))
        except GatewayError as exc:
            self.events.oidc_login(provider, exc.code)
            log.info("oidc sign-in via %s refused: %s (%s)", provider, exc.code, exc.detail)
            raise
        self.events.oidc_login(provider, "success")
        return completed

    async def _complete(self, provider: str, query: Mapping[str, str], binding: str | None, auth: AuthService,
                        origin: SessionOrigin) -> Completed:
        record = await self._take_state(provider, query, binding, auth)
        client = self.clients[provider]
        metadata = await client.metadata()
        iss = query.get("iss")  # RFC 9207: which provider answered, against mix-up attacks
        if (iss is not None and iss != metadata.issuer) or (iss is None and metadata.iss_parameter):
            raise GatewayError(400, ErrorCode.ISSUER_MISMATCH, "The sign-in answer comes from another identity provider")
        if "error" in query:
            error = query["error"][:64]
            raise GatewayError(401, ErrorCode.PROVIDER_DENIED, f"The identity provider did not sign you in ({error})")
        code = query.get("code")
        if not code or len(code) > MAX_PARAM:
            raise GatewayError(400, ErrorCode.BAD_REQUEST, "The sign-in answer carries no code")
        tokens = await client.exchange(code, record["v"], self.redirect_uri(provider), self._secrets[provider])
        id_token = tokens["id_token"]
        claims = await validate_id_token(client, id_token, record["n"])
        userinfo = None
        if client.settings.userinfo and isinstance(tokens.get("access_token"), str):
            userinfo = await client.userinfo(tokens["access_token"])
            if userinfo.get("sub") != claims["sub"]:  # OIDC Core §5.3.2: else it is someone else's answer
                raise GatewayError(401, ErrorCode.ID_TOKEN_INVALID, "The userinfo answer is about another user")
        if "su" in record:
            return await self._stepped_up(provider, StepUpRequest.from_record(record["su"]), claims, record, auth)
        self._report_missing(provider, missing_claims(client.settings, claims, userinfo))
        identity = await resolve_identity(provider, client.settings, claims, userinfo, auth.users)
        facts = login_facts(client.settings, claims, self.config.levels)
        issued = await auth.start_session(identity.subject, identity.claims, refresh_extra=identity.refresh_extra,
                                          grant="oidc", origin=replace(origin, method="oidc", provider=provider),
                                          amr=facts.amr, auth_time=facts.auth_time, acr=facts.acr, provider=provider)
        sid = claims.get("sid") if isinstance(claims.get("sid"), str) else None
        link = SessionLink(provider, sid, claims["sub"], id_token)
        indexes = [_sub_index(provider, claims["sub"])] + ([_sid_index(provider, sid)] if sid else [])
        await auth.store.link_session(issued.family, link.as_json(), indexes, auth.family_ttl)
        return Completed(issued, record["next"], record["d"])

    async def _stepped_up(self, provider: str, request: StepUpRequest, id_claims: Mapping[str, Any],
                          record: Mapping[str, Any], auth: AuthService) -> Completed:
        """A step-up's callback: the checks of ``oidc_step_up.check_step_up``, then a new access token of the family."""
        carried = check_step_up(request, self.clients[provider].settings, id_claims, self.config.levels)
        if await auth.store.is_revoked(request.family, ""):
            raise GatewayError.unauthorized(ErrorCode.TOKEN_REVOKED, "This session has ended; sign in again", token_presented=False)
        access, minted = auth.tokens.mint_access(request.subject, carried, request.family)
        auth.events.issued("step_up")
        emit("second_factor.verified", subject=request.subject, method="oidc", step="step_up", provider=provider,
             session=request.family)
        log.info("oidc step-up via %s: a new access token for the session", provider)
        issued = Issued(access, None, int(minted["exp"] - minted["iat"]), request.subject, request.family)
        return Completed(issued, record["next"], record["d"])

    def _report_missing(self, provider: str, missing: list[str]) -> None:
        """Mapped claims the provider did not release, logged once per provider (and claim), not per sign-in:
        sessions silently without email, name or roles are the usual sign of claims kept to userinfo."""
        reported = self._reported.setdefault(provider, set())
        new = [claim for claim in missing if claim not in reported]
        if not new:
            return
        reported.update(new)
        settings = self.settings.providers[provider]
        listed = ", ".join(f"{claim} ({settings.claims[claim]})" for claim in new)
        if settings.userinfo:
            hint = (f"check the scopes requested ({' '.join(settings.scopes)}) and the provider's claim mappers "
                    "or release settings for this client")
        else:
            hint = (f"many providers release profile and email claims at userinfo only: set userinfo: true "
                    f"(oidc.providers.{provider}.userinfo), or have the provider put them in the ID token")
        where = "the ID token or userinfo" if settings.userinfo else "the ID token (userinfo is off)"
        log.warning("oidc provider %s: mapped claims not released by the provider, absent from %s: %s; sessions "
                    "go without them; %s (logged once per provider)", provider, where, listed, hint)

    # -- the SPA's one-time code ----------------------------------------------------------

    async def code_for(self, issued: Issued, auth: AuthService) -> str:
        code = secrets.token_urlsafe(32)
        await auth.store.put_once(f"oidc:code:{_digest(code)}", issued.as_json(), self.settings.code_lifetime)
        return code

    async def redeem(self, code: object, auth: AuthService) -> Issued:
        """The session a one-time code stands for; the code is spent whether or not it was valid."""
        if not isinstance(code, str) or not code or len(code) > MAX_PARAM:
            raise GatewayError(400, ErrorCode.INVALID_CODE, "Send the code from the sign-in redirect")
        raw = await auth.store.take(f"oidc:code:{_digest(code)}")
        if raw is None:
            raise GatewayError(400, ErrorCode.INVALID_CODE, "This code is unknown, expired or already used")
        return Issued.from_json(raw)

    # -- logout ------------------------------------------------------------------------

    async def link_of(self, family: str, auth: AuthService) -> SessionLink | None:
        raw = await auth.store.session_link(family)
        return None if raw is None else SessionLink.from_json(raw)

    async def provider_user_sessions(self, provider: str, sub: str, auth: AuthService) -> list[str]:
        """The families signed in through ``provider`` as its user ``sub`` (the provider's own subject)."""
        return await auth.store.linked_families(_sub_index(provider, sub))

    async def backchannel_logout(self, provider: str, token: object, auth: AuthService) -> int:
        """Revoke the sessions a valid logout token names (its ``sid``, else its ``sub``); how many."""
        client = self.clients[provider]
        claims = await validate_logout_token(client, token)
        if not await auth.store.put_once(f"oidc:bcl:{provider}:{claims['jti']}", "1", 2 * LOGOUT_TOKEN_MAX_AGE):
            raise GatewayError.unauthorized(ErrorCode.ID_TOKEN_INVALID, "This logout token was already used", token_presented=False)
        sid, sub = claims.get("sid"), claims.get("sub")
        index = _sid_index(provider, sid) if isinstance(sid, str) and sid else _sub_index(provider, str(sub))
        families = await auth.store.linked_families(index)
        for family in families:
            await auth.store.revoke_family(family, auth.family_ttl)
            auth.events.revoked("backchannel_logout")
            emit("session.revoked", reason="backchannel_logout", session=family, provider=provider)
        log.info("oidc back-channel logout from %s: %d session(s) revoked", provider, len(families))
        return len(families)

    async def close(self) -> None:
        for client in self.clients.values():
            await client.close()
