"""Service keys: who a machine is, from a key in ``service_keys.header`` or ``Authorization: Bearer gwsk_...``.

A key is ``gwsk_`` and 32 random bytes in base64url (43 characters). The database
(``factors.service_keys``) holds its SHA-256, which is what a presented key is
looked up by: for 256-bit random keys a plain hash is enough (nothing to guess),
and looking up a digest reveals nothing about a key that timing could leak.

Verification is cheap: a process remembers what it looked up (a live key, a
revoked or unknown one) for ``service_keys.cache`` seconds in a bounded
``TTLMap`` keyed by the digest. That lifetime is the documented bound within
which a revocation (``revoked_at`` in the database) reaches every instance.
Expiry is checked on every request. The last use is written at most once a
minute per key, by a task of its own: a request never waits for it, and a
failing write is only logged.
"""
from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import re
import secrets
import time
from typing import Any, Mapping

from aiohttp import web

from gateway.auth.tokens import Claims
from gateway.config.service_keys import ServiceKeySettings
from gateway.errors import ErrorCode, GatewayError
from gateway.factors.service_keys import ServiceKeyRecord, ServiceKeyTable
from gateway.sources.users import RESERVED_CLAIMS
from gateway.stores.base import StoreUnavailable
from gateway.ttl import TTLMap

__all__ = ["KEY_PREFIX", "NAME", "ServiceKeys", "check_claims", "digest", "generate_key", "looks_like_key", "subject_of"]

KEY_PREFIX = "gwsk_"
_KEY = re.compile(r"^gwsk_[A-Za-z0-9_-]{43}$")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
SHOWN = 12  # characters of a key kept for listings: gwsk_ and 7 of the random part
TOUCH_EVERY = 60.0  # seconds between two last-use writes of one key, at least
MAX_CLAIMS = 32
log = logging.getLogger("gateway.service_keys")


def generate_key() -> str:
    return KEY_PREFIX + base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def looks_like_key(value: str) -> bool:
    return value.startswith(KEY_PREFIX)


def subject_of(name: str) -> str:
    return f"service:{name}"


def check_claims(claims: Any) -> dict[str, Any]:
    """A key's claims as a users-file user's: a mapping of names to strings, numbers, booleans or lists of strings,
    none of them a claim the gateway sets itself (``sub``, ``exp``, ...); ValueError says what is wrong."""
    if not isinstance(claims, dict):
        raise ValueError("claims: expected a JSON object of claim names to values")
    if len(claims) > MAX_CLAIMS:
        raise ValueError(f"claims: at most {MAX_CLAIMS}")
    clash = sorted((RESERVED_CLAIMS | {"service_key"}) & set(claims))
    if clash:
        raise ValueError(f"claims: {clash} are set by the gateway and cannot be given")
    for name, value in claims.items():
        if not name or len(name) > 64:
            raise ValueError(f"claims: {name!r} is not a claim name (1-64 characters)")
        scalar = isinstance(value, (str, int, float, bool)) and (not isinstance(value, str) or len(value) <= 1024)
        listed = isinstance(value, list) and len(value) <= 64 and all(isinstance(v, str) and len(v) <= 256 for v in value)
        if not (scalar or listed):
            raise ValueError(f"claims.{name}: expected a string, number, boolean or list of strings")
    return dict(claims)


def _refused(code: ErrorCode, detail: str) -> GatewayError:
    return GatewayError.unauthorized(code, detail)


class ServiceKeys:
    """The verifier of one configuration; ``table`` is the process's credentials database."""

    def __init__(self, settings: ServiceKeySettings, table: ServiceKeyTable) -> None:
        self.settings = settings
        self.table = table
        # by digest: (the record,) or (None,) for a key the database does not know, so that both are remembered
        self._cache: TTLMap[str, tuple[ServiceKeyRecord | None]] = TTLMap(settings.cache_size)
        self._touched: TTLMap[str, bool] = TTLMap(settings.cache_size)
        self._tasks: set[asyncio.Task[None]] = set()

    def presented(self, request: web.Request) -> str | None:
        """The key a request carries (the header, or a bearer that starts with ``gwsk_``), None when it has none.
        Several headers come back joined, which no key matches."""
        values = request.headers.getall(self.settings.header, [])
        if values:
            return ",".join(values)
        if self.settings.bearer:
            authorization = request.headers.getall("Authorization", [])
            if len(authorization) == 1:
                scheme, _, token = authorization[0].strip().partition(" ")
                if scheme.lower() == "bearer" and looks_like_key(token.strip()):
                    return token.strip()
        return None

    def in_header(self, request: web.Request) -> bool:
        return self.settings.header in request.headers

    async def verify(self, key: str, now: float | None = None) -> Claims:
        """The key's claims (``sub`` = ``service:<name>``); 401 for a malformed, unknown, revoked or expired key."""
        if not _KEY.match(key):
            raise _refused(ErrorCode.SERVICE_KEY_INVALID, "This is not a service key (gwsk_ and 43 base64url characters)")
        moment = time.time() if now is None else now
        hashed = digest(key)
        record = await self._lookup(hashed, moment)
        if record is None:
            raise _refused(ErrorCode.SERVICE_KEY_INVALID, "This service key is not valid")
        if record.revoked_at is not None:
            raise _refused(ErrorCode.SERVICE_KEY_REVOKED, "This service key has been revoked")
        if record.expired(moment):
            raise _refused(ErrorCode.SERVICE_KEY_EXPIRED, "This service key has expired")
        self._touch(record.name, moment)
        claims: dict[str, Any] = {**record.claims, "sub": subject_of(record.name), "service_key": record.name}
        return claims

    async def _lookup(self, hashed: str, now: float) -> ServiceKeyRecord | None:
        cached = self._cache.get(hashed, time.monotonic())
        if cached is not None:
            return cached[0]
        try:
            record = await self.table.by_digest(hashed)
        except StoreUnavailable:
            raise GatewayError(503, ErrorCode.STORE_UNAVAILABLE, "Service keys cannot be checked right now") from None
        if self.settings.cache > 0:
            self._cache.put(hashed, (record,), time.monotonic() + self.settings.cache)
        return record

    def forget(self, name: str) -> None:
        """Drop a key from this process's cache at once (its revocation through this process's admin API)."""
        for hashed in list(self._cache):
            cached = self._cache.get(hashed, time.monotonic())
            if cached is not None and cached[0] is not None and cached[0].name == name:
                self._cache.pop(hashed)

    def _touch(self, name: str, now: float) -> None:
        """Write the last use in the background, at most once a minute per key and process."""
        if self._touched.holds(name, time.monotonic()):
            return
        self._touched.put(name, True, time.monotonic() + TOUCH_EVERY)
        task = asyncio.get_running_loop().create_task(self._write_use(name, int(now)))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _write_use(self, name: str, now: int) -> None:
        try:
            await self.table.touch(name, now)
        except Exception as exc:  # never the request's problem
            log.warning("service key %s: the last use was not recorded (%s)", name, type(exc).__name__)

    async def drain(self) -> None:
        """Wait for last-use writes in flight (shutdown, tests)."""
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)


def expiry(expires_in: float | None, now: float) -> int | None:
    return None if expires_in is None else int(now + expires_in)


def new_record(name: str, owner: str, claims: Mapping[str, Any], key: str, expires_at: int | None,
               now: float) -> ServiceKeyRecord:
    return ServiceKeyRecord(name=name, prefix=key[:SHOWN], owner=owner, claims=dict(claims), created_at=int(now),
                            expires_at=expires_at, digest=digest(key))
