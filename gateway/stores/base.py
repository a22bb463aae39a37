"""The store contract every backend fulfils, by role (sessions, revocations, limits, sign-in state), checked by one
shared test suite (tests/ops/test_stores.py)."""
from __future__ import annotations

import abc
import enum
from dataclasses import dataclass
from typing import Mapping

from gateway.errors import ErrorCode, GatewayError

__all__ = [
    "LimitStore", "RateDecision", "RevocationStore", "Rotation", "RotationOutcome", "SessionStore", "StateStore", "Store",
    "StoreUnavailable", "StoreWrapper", "WindowCount",
]


class StoreUnavailable(GatewayError):
    """The store did not answer; the gateway fails closed with a 503, never a 500."""

    def __init__(self, detail: str = "The token store is unavailable") -> None:
        super().__init__(503, ErrorCode.STORE_UNAVAILABLE, detail, headers={"Retry-After": "1"})


class RotationOutcome(enum.Enum):
    ROTATED = "rotated"  # the presented token was current; the successor is now current
    GRACE = "grace"  # the token was just rotated; ``successor`` is the pair minted then
    REUSED = "reused"  # a spent token came back after the grace window: the family is now revoked
    REVOKED = "revoked"  # the family was revoked earlier (logout, reuse)
    UNKNOWN = "unknown"  # no record of the family (expired, or a store that lost its state)


@dataclass(frozen=True, slots=True)
class Rotation:
    outcome: RotationOutcome
    successor: str | None = None


@dataclass(frozen=True, slots=True)
class WindowCount:
    """A counter in a fixed window: its value and the seconds until it resets to zero."""

    count: int
    resets_in: float


@dataclass(frozen=True, slots=True)
class RateDecision:
    """One request through a rate limit (GCRA): allowed or not, and when it frees up."""

    allowed: bool
    remaining: int  # requests that would pass right now, after this one
    retry_after: float  # seconds until one more would pass (0 when allowed)
    reset_after: float  # seconds until the limit is fully replenished


class SessionStore(abc.ABC):
    """Login sessions (families, keyed by the ``fid`` claim) and their refresh-token rotation."""

    @abc.abstractmethod
    async def start_family(self, family: str, jti: str, ttl: float) -> None:
        """Record a new login whose current refresh token is ``jti``."""

    @abc.abstractmethod
    async def rotate(self, family: str, old_jti: str, new_jti: str, successor: str, ttl: float, grace: float) -> Rotation:
        """Atomically spend ``old_jti`` for ``new_jti``; ``successor`` is kept ``grace`` seconds for repeats."""

    @abc.abstractmethod
    async def is_current(self, family: str, jti: str) -> RotationOutcome:
        """For refresh without rotation: ROTATED if ``jti`` is the family's live token, else why not."""

    @abc.abstractmethod
    async def revoke_family(self, family: str, ttl: float) -> None:
        """Revoke every token of the family; the mark lives at least ``ttl`` seconds."""

    @abc.abstractmethod
    async def track_session(self, user: str, family: str, ttl: float, cap: int) -> list[str]:
        """Note a new family of ``user`` (live ``ttl`` seconds); the families beyond the newest ``cap``,
        oldest first, are dropped from the record and returned for the caller to revoke."""

    @abc.abstractmethod
    async def user_sessions(self, user: str) -> list[str]:
        """The families ``track_session`` lists for ``user`` and that have not expired, in no set order
        (revoked ones may be included: the caller asks ``is_current`` to tell)."""

    @abc.abstractmethod
    async def describe_session(self, family: str, fields: Mapping[str, str], ttl: float) -> None:
        """Merge ``fields`` into the family's description (created if absent), which then lives ``ttl`` seconds."""

    @abc.abstractmethod
    async def session_details(self, family: str) -> dict[str, str] | None:
        """The family's description (``describe_session``), or None."""


class RevocationStore(abc.ABC):
    """What every proxied request asks: is this access token revoked?"""

    @abc.abstractmethod
    async def deny(self, family: str, jti: str, ttl: float) -> None:
        """Deny one access token until it would have expired anyway."""

    @abc.abstractmethod
    async def is_revoked(self, family: str, jti: str) -> bool:
        """True if the access token is denied, its family revoked, or its family unknown.

        Every family lives (``start_family``) as long as any token it can mint, so an
        unknown family means a store that lost its data: its tokens are refused rather
        than their revocations forgotten.
        """


class LimitStore(abc.ABC):
    """Rate limits of routes and the counters of the login throttle, shared by every instance."""

    @abc.abstractmethod
    async def rate_limit(self, key: str, interval: float, capacity: int) -> RateDecision:
        """One request against a GCRA limit: one request per ``interval`` seconds, bursts up to ``capacity``."""

    @abc.abstractmethod
    async def incr_counter(self, key: str, window: float, amount: int = 1) -> WindowCount:
        """Add ``amount``; a new counter lives ``window`` seconds from its first hit, never longer.

        A negative ``amount`` never creates a counter (it answers a zero count).
        """

    @abc.abstractmethod
    async def reset_counter(self, key: str) -> None:
        """Drop the counter."""


class StateStore(abc.ABC):
    """Short-lived state of the OIDC sign-in: one-time values and the links of sessions to the provider's."""

    @abc.abstractmethod
    async def put_once(self, key: str, value: str, ttl: float) -> bool:
        """Store ``value`` under ``key`` for ``ttl`` seconds unless the key exists; False if it did (a replay)."""

    @abc.abstractmethod
    async def take(self, key: str) -> str | None:
        """The value of ``key`` and its deletion in one step: of two callers, exactly one gets it."""

    @abc.abstractmethod
    async def link_session(self, family: str, data: str, indexes: list[str], ttl: float) -> None:
        """Attach ``data`` to a family and list the family under each index key (``ttl`` seconds)."""

    @abc.abstractmethod
    async def session_link(self, family: str) -> str | None:
        """The data attached to ``family`` by ``link_session``, or None."""

    @abc.abstractmethod
    async def linked_families(self, index: str) -> list[str]:
        """Every family listed under ``index`` (expired ones may be included: revoking them is harmless)."""


class Store(SessionStore, RevocationStore, LimitStore, StateStore):
    """A backend fulfils every role; each consumer is typed by the role it uses. Every record expires on its own."""

    async def start(self) -> None:  # noqa: B027 - an optional hook: most backends have nothing to open
        """Open connections or background tasks; called once before serving."""

    async def close(self) -> None:  # noqa: B027 - an optional hook: most backends have nothing to release
        """Release connections; called once at shutdown."""

    @abc.abstractmethod
    async def ping(self) -> None:
        """Return if the store answers, raise StoreUnavailable if not."""


class StoreWrapper(Store):
    """A store that adds behaviour around another one: every operation passes to ``inner`` unless overridden.

    Wrappers subclass this rather than forwarding by ``__getattr__``, so each
    keeps the whole, typed ``Store`` interface.
    """

    def __init__(self, inner: Store) -> None:
        self.inner = inner

    async def start(self) -> None:
        await self.inner.start()

    async def close(self) -> None:
        await self.inner.close()

    async def ping(self) -> None:
        await self.inner.ping()

    async def start_family(self, family: str, jti: str, ttl: float) -> None:
        await self.inner.start_family(family, jti, ttl)

    async def rotate(self, family: str, old_jti: str, new_jti: str, successor: str, ttl: float, grace: float) -> Rotation:
        return await self.inner.rotate(family, old_jti, new_jti, successor, ttl, grace)

    async def is_current(self, family: str, jti: str) -> RotationOutcome:
        return await self.inner.is_current(family, jti)

    async def revoke_family(self, family: str, ttl: float) -> None:
        await self.inner.revoke_family(family, ttl)

    async def deny(self, family: str, jti: str, ttl: float) -> None:
        await self.inner.deny(family, jti, ttl)

    async def is_revoked(self, family: str, jti: str) -> bool:
        return await self.inner.is_revoked(family, jti)

    async def track_session(self, user: str, family: str, ttl: float, cap: int) -> list[str]:
        return await self.inner.track_session(user, family, ttl, cap)

    async def user_sessions(self, user: str) -> list[str]:
        return await self.inner.user_sessions(user)

    async def describe_session(self, family: str, fields: Mapping[str, str], ttl: float) -> None:
        await self.inner.describe_session(family, fields, ttl)

    async def session_details(self, family: str) -> dict[str, str] | None:
        return await self.inner.session_details(family)

    async def rate_limit(self, key: str, interval: float, capacity: int) -> RateDecision:
        return await self.inner.rate_limit(key, interval, capacity)

    async def incr_counter(self, key: str, window: float, amount: int = 1) -> WindowCount:
        return await self.inner.incr_counter(key, window, amount)

    async def reset_counter(self, key: str) -> None:
        await self.inner.reset_counter(key)

    async def put_once(self, key: str, value: str, ttl: float) -> bool:
        return await self.inner.put_once(key, value, ttl)

    async def take(self, key: str) -> str | None:
        return await self.inner.take(key)

    async def link_session(self, family: str, data: str, indexes: list[str], ttl: float) -> None:
        await self.inner.link_session(family, data, indexes, ttl)

    async def session_link(self, family: str) -> str | None:
        return await self.inner.session_link(family)

    async def linked_families(self, index: str) -> list[str]:
        return await self.inner.linked_families(index)
