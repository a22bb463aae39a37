"""How a provider signed the user in, and a step-up that goes back to the provider (RFC 9470 with OIDC).

A provider is believed about how and when it signed the user in only where its
configuration says so (``trust_authentication``): then the session carries its
``amr`` filtered to RFC 8176 values, its ``auth_time``, and its ``acr`` when that
names one of ``second_factor.levels`` (as the provider calls it: ``acr_values``).
Otherwise the session's ``amr`` is empty and its ``auth_time`` is when the
gateway finished the sign-in.

A step-up for a provider's session is an authorization request to that
provider with ``max_age`` (the route's ``max_auth_age``), ``acr_values`` (the
level, by the provider's name for it) and ``prompt=login`` where the provider's
single sign-on would otherwise answer with the same login (an untrusted provider, whose ``auth_time`` means
nothing here, or a missing level). Its callback takes the same state record as
a sign-in (single use, bound to the browser), and then checks what this module
checks: the same provider subject as the session, a fresh enough ``auth_time``,
and (trusted) the level. The result is a new access token of the same family.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Mapping

from gateway.config.factors import AMR_VALUES
from gateway.config.oidc import OidcProvider
from gateway.config.tokens import TOKEN_CLAIMS
from gateway.errors import ErrorCode, GatewayError

__all__ = ["LoginFacts", "StepUpRequest", "check_step_up", "login_facts"]

CARRIED_OUT = TOKEN_CLAIMS | {"sub"}  # minted afresh for the new access token


@dataclass(frozen=True, slots=True)
class LoginFacts:
    """How and when the provider signed the user in, as far as the gateway believes it."""

    amr: tuple[str, ...]
    auth_time: int | None  # None: the gateway's own time of the sign-in
    acr: str | None


def _auth_time(claims: Mapping[str, Any]) -> int | None:
    value = claims.get("auth_time")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return int(value)


def login_facts(settings: OidcProvider, id_claims: Mapping[str, Any], levels: Mapping[str, tuple[str, ...]]) -> LoginFacts:
    """The session's ``amr``/``auth_time``/``acr`` from a verified ID token: the provider's when trusted, else none."""
    if not settings.trust_authentication:
        return LoginFacts((), None, None)
    amr = id_claims.get("amr")
    methods = tuple(dict.fromkeys(m for m in amr if isinstance(m, str) and m in AMR_VALUES)) if isinstance(amr, list) else ()
    acr = id_claims.get("acr")
    level = settings.level_of(acr) if isinstance(acr, str) else None
    auth_time = _auth_time(id_claims)
    if auth_time is not None and auth_time > time.time() + settings.leeway:
        raise GatewayError.unauthorized(ErrorCode.ID_TOKEN_INVALID, "The token's auth_time is in the future", token_presented=False)
    return LoginFacts(methods, auth_time, level if level in levels else None)


@dataclass(frozen=True, slots=True)
class StepUpRequest:
    """What a step-up asks of the provider and for which session; rides in the sign-in's state record."""

    family: str
    subject: str  # the gateway's subject of the session
    provider_sub: str  # the provider's subject the session was signed in as
    claims: Mapping[str, Any]  # the access token's claims to carry into the new one
    started: int
    max_age: int | None
    level: str | None

    def params(self, settings: OidcProvider, level_met: bool) -> dict[str, str]:
        """The authorization request's ``max_age``, ``acr_values`` (the level as the provider calls it) and ``prompt``."""
        out: dict[str, str] = {}
        if self.max_age is not None:
            out["max_age"] = str(self.max_age)
        if self.level is not None:
            out["acr_values"] = settings.level_acr(self.level)
        # else the provider's single sign-on would answer with the same login
        if not settings.trust_authentication or not level_met:
            out["prompt"] = "login"
        return out

    def as_record(self) -> dict[str, Any]:
        return {"fid": self.family, "sub": self.subject, "psub": self.provider_sub, "c": dict(self.claims),
                "t": self.started, "max_age": self.max_age, "acr": self.level}

    @classmethod
    def from_record(cls, data: Mapping[str, Any]) -> "StepUpRequest":
        return cls(data["fid"], data["sub"], data["psub"], data["c"], data["t"], data.get("max_age"), data.get("acr"))


def _refused(detail: str) -> GatewayError:
    return GatewayError.unauthorized(ErrorCode.STEP_UP_INSUFFICIENT, detail, token_presented=False)


def check_step_up(request: StepUpRequest, settings: OidcProvider, id_claims: Mapping[str, Any],
                  levels: Mapping[str, tuple[str, ...]]) -> dict[str, Any]:
    """The claims of the session's new access token, once the provider's answer is about the session's user, recent
    enough and (trusted) at the level; 403 ``step_up_wrong_user`` or 401 ``step_up_insufficient`` otherwise."""
    if id_claims.get("sub") != request.provider_sub:
        raise GatewayError(403, ErrorCode.STEP_UP_WRONG_USER,
                           "The identity provider signed in another user than this session's; sign in as the same user")
    facts = login_facts(settings, id_claims, levels)
    auth_time = _auth_time(id_claims)
    oldest = request.started - (request.max_age if request.max_age is not None else 0) - settings.leeway
    if auth_time is None and settings.trust_authentication:
        raise _refused("The identity provider did not say when you signed in (auth_time)")
    if auth_time is not None and auth_time < oldest:
        raise _refused("The identity provider did not sign you in again recently enough")
    carried = {k: v for k, v in request.claims.items() if k not in CARRIED_OUT}
    if not settings.trust_authentication:  # how the user signed in stays the session's; when is now
        carried["auth_time"] = int(time.time())
        return carried
    if request.level is not None:
        methods = set(levels.get(request.level, ()))
        if not (methods & set(facts.amr) or facts.acr == request.level):
            raise _refused(f"The identity provider did not confirm the level {request.level} (its acr or amr)")
    carried.update(amr=list(facts.amr), auth_time=facts.auth_time)
    carried.pop("acr", None)
    if facts.acr is not None:
        carried["acr"] = facts.acr
    if not facts.amr:
        carried.pop("amr")
    return carried
