"""What every user source is: find a login without its password, check the password, re-read a user.

A source answers ``find`` with a ``Candidate`` (it knows the login), None (it
does not: the next source is asked), or raises ``SourceUnavailable`` (it could
not tell: the login is refused with 503, since a later source must not decide
for a login an earlier one may own). The password is only ever handed to the
deciding source's ``Candidate.check``.
"""
from __future__ import annotations

import datetime
import decimal
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Generic, Mapping, Protocol, TypeVar

from gateway.sources.users import RESERVED_CLAIMS, User
from gateway.ttl import TTLMap

__all__ = [
    "Candidate",
    "SourceUnavailable",
    "TtlCache",
    "UserSource",
    "json_claim",
    "user_claims",
]


class SourceUnavailable(Exception):
    """The source could not answer (down, slow, refused); the message names no user and no secret."""


@dataclass(frozen=True, slots=True)
class Candidate:
    """A login a source knows. ``check(password)`` is the user if the password is right, else None.

    The chain remembers the last candidate's cost so an unknown login pays it
    too: ``stored_hash`` when the password is checked locally (the unknown
    login is checked against that hash), else ``decoy``, a call that costs what
    ``check`` costs and never succeeds (an LDAP bind as nobody).
    """

    check: Callable[[str], Awaitable[User | None]]
    stored_hash: str | None = field(default=None, repr=False)
    decoy: Callable[[str], Awaitable[object]] | None = None


class UserSource(Protocol):
    name: str  # "file", "sql[1]", ...: in metrics, logs and /readyz
    kind: str  # file | sql | ldap | http
    timeout: float  # every call is bounded by this (seconds)
    cache_ttl: float  # positive cache of lookups at refresh (0 = none)
    rereads: bool  # False: lookup cannot re-read a user (refresh keeps the login's claims)

    async def find(self, login: str, by: str) -> Candidate | None: ...
    async def lookup(self, username: str) -> User | None: ...
    async def probe(self) -> str: ...  # what a login needs, for a login nobody has (readiness, check --probe)
    async def close(self) -> None: ...
    def names(self) -> list[str]: ...
    def held_hashes(self) -> list[str]: ...  # hashes known at start, for the chain's decoy (decoy.py)


def json_claim(value: Any) -> Any:
    """A database value as a JSON-safe claim (datetimes as ISO 8601, decimals as numbers, bytes refused)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, decimal.Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [json_claim(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): json_claim(v) for k, v in value.items()}
    if isinstance(value, (bytes, bytearray, memoryview)):
        return None
    return str(value)


def user_claims(values: Mapping[str, Any]) -> dict[str, Any]:
    """Claims from a source, JSON-safe, None left out, never the gateway's own claims."""
    return {k: json_claim(v) for k, v in values.items() if v is not None and k not in RESERVED_CLAIMS}


V = TypeVar("V")


class TtlCache(Generic[V]):
    """A bounded map whose entries die ``ttl`` seconds after they were put (oldest evicted first)."""

    def __init__(self, ttl: float, max_entries: int = 10_000) -> None:
        self.ttl = ttl
        self._entries: TTLMap[str, V] = TTLMap(max_entries)

    def get(self, key: str) -> V | None:
        return self._entries.get(key, time.monotonic())

    def put(self, key: str, value: V) -> None:
        if self.ttl > 0:
            self._entries.put(key, value, time.monotonic() + self.ttl)
