"""What the gateway remembers of each session for the people who run it: how and from where it started, its last
refresh, its current access token's expiry; listing a user's sessions and ending them.

The description lives in the store beside the family (``SessionStore.describe_session``), as long as the family
does. It is informational: a store that cannot record it never fails a login or a refresh. Ending sessions goes
through ``revoke_family``, the same revocation as logout, so it reaches every instance within the revocation
cache's bound.
"""
from __future__ import annotations

import hashlib
import hmac
import logging
import time
from dataclasses import dataclass
from typing import Any, Mapping

from gateway.stores import RotationOutcome, SessionStore, StoreUnavailable

__all__ = [
    "FINGERPRINTED_SOURCES", "MAX_USER_AGENT", "SessionOrigin", "SessionView", "describe", "live_sessions",
    "password_fingerprint", "revoke_sessions",
]

log = logging.getLogger("gateway.sessions")
PASSWORD_FIELD = "pwfp"  # the accepted fingerprints of the stored password hash, comma-separated
FINGERPRINTED_SOURCES = frozenset({"file", "sql"})  # the sources whose users carry their stored hash
MAX_USER_AGENT = 256  # characters of the User-Agent kept: enough to tell browsers apart, never a large record


@dataclass(frozen=True, slots=True)
class SessionOrigin:
    """How a session started: ``method`` is ``password`` or ``oidc`` (then ``provider`` names the provider)."""

    method: str
    provider: str | None = None
    client_ip: str | None = None
    user_agent: str | None = None
    factors: tuple[str, ...] = ()  # second factors passed at sign-in (none yet: the second-factor issue fills it)
    password: str | None = None  # the fingerprint of the stored password hash (password_change_ends_sessions)

    def fields(self, now: float) -> dict[str, str]:
        fields = {"created": f"{now:.3f}", "method": self.method, "factors": ",".join(self.factors)}
        if self.provider:
            fields["provider"] = self.provider
        if self.client_ip:
            fields["ip"] = self.client_ip
        if self.user_agent:
            fields["ua"] = "".join(c for c in self.user_agent[:MAX_USER_AGENT] if c.isprintable())
        if self.password:
            fields[PASSWORD_FIELD] = self.password
        return fields


@dataclass(frozen=True, slots=True)
class SessionView:
    """One live session as the admin API lists it (times in Unix seconds)."""

    session: str  # the family id (``fid``)
    created: float | None
    last_refresh: float | None
    access_expires: float | None
    client_ip: str | None
    user_agent: str | None
    method: str | None
    provider: str | None
    factors: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        return {
            "session": self.session, "created": self.created, "last_refresh": self.last_refresh,
            "access_expires": self.access_expires, "client_ip": self.client_ip, "user_agent": self.user_agent,
            "method": self.method, "provider": self.provider, "factors": list(self.factors),
        }

    @classmethod
    def of(cls, family: str, fields: Mapping[str, str]) -> "SessionView":
        def number(name: str) -> float | None:
            try:
                return float(fields[name])
            except (KeyError, ValueError):
                return None

        factors = tuple(f for f in fields.get("factors", "").split(",") if f)
        return cls(family, number("created"), number("last_refresh"), number("access_exp"), fields.get("ip"),
                   fields.get("ua"), fields.get("method"), fields.get("provider"), factors)


async def describe(store: SessionStore, family: str, fields: Mapping[str, str], ttl: float) -> None:
    """Record ``fields`` of a session; a store that fails here is logged, never the login's or refresh's failure."""
    try:
        await store.describe_session(family, fields, ttl)
    except StoreUnavailable:
        log.warning("session %s: its description was not recorded (store unavailable)", family[:8])


def refreshed_fields(access_expires: float, now: float | None = None) -> dict[str, str]:
    return {"last_refresh": f"{time.time() if now is None else now:.3f}", "access_exp": f"{access_expires:.3f}"}


async def _live(store: SessionStore, family: str) -> bool:
    # A family is live while its record holds a current token: is_current answers ROTATED or REUSED for a live
    # family and an unknown jti, REVOKED or UNKNOWN otherwise.
    return await store.is_current(family, "") in (RotationOutcome.ROTATED, RotationOutcome.REUSED)


async def live_sessions(store: SessionStore, user: str) -> list[SessionView]:
    """The user's sessions that can still refresh, oldest first."""
    views = []
    for family in await store.user_sessions(user):
        if await _live(store, family):
            views.append(SessionView.of(family, await store.session_details(family) or {}))
    return sorted(views, key=lambda v: (v.created or 0.0, v.session))


async def revoke_sessions(store: SessionStore, families: list[str], ttl: float) -> list[str]:
    """Revoke each live family of ``families`` (as logout does); the ones that were live, in order."""
    ended = []
    for family in families:
        if await _live(store, family):
            await store.revoke_family(family, ttl)
            ended.append(family)
    return ended


def password_fingerprint(key: bytes, stored_hash: str) -> str:
    """What a session keeps of its user's stored password hash: a keyed digest (128 bits), never the hash."""
    return hmac.new(key, stored_hash.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()[:32]


async def accept_rehash(store: SessionStore, user: str, old: str, new: str, ttl: float) -> None:
    """The gateway replaced ``old`` by ``new`` (fingerprints) itself (``rehash_on_login``): the user's sessions that
    accepted ``old`` accept ``new`` too, so the upgrade never counts as a password change."""
    for family in await store.user_sessions(user):
        details = await store.session_details(family) or {}
        accepted = details.get(PASSWORD_FIELD, "").split(",")
        if old in accepted and new not in accepted:
            await describe(store, family, {PASSWORD_FIELD: ",".join([*accepted, new][-4:])}, ttl)


async def password_changed(store: SessionStore, family: str, current: str) -> bool:
    """True if the session recorded fingerprints and ``current`` is none of them (sessions without one: False)."""
    details = await store.session_details(family) or {}
    accepted = details.get(PASSWORD_FIELD)
    return accepted is not None and accepted != "" and current not in accepted.split(",")
