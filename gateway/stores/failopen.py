"""``store.failure_mode: fail_open``: the revocation check of a proxied request, when Redis is unreachable.

The request goes on with the checks that need no store (signature, expiry,
issuer, audience, type); only "is this token revoked?" is skipped. It is loud:
a WARNING at most once a second (with the count since the last one, so an
outage does not flood the log), the request's access line says
``"revocation_check": "skipped"``, and a metric counts such requests. The
token endpoints never fail open.
"""
from __future__ import annotations

import logging
import time

from aiohttp import web

from gateway.context import REVOCATION_SKIPPED
from gateway.stores import Store, StoreUnavailable
from gateway.stores.base import StoreWrapper

__all__ = ["FailOpenRevocations", "revocation_store"]

log = logging.getLogger("gateway.store")


def revocation_store(store: Store, request: web.Request, failure_mode: str) -> Store:
    """The store a request's token check should use under ``failure_mode``."""
    if failure_mode != "fail_open":
        return store
    return FailOpenRevocations(store, request)


class FailOpenRevocations(StoreWrapper):
    """The store seen by one request's token check: an unreachable store answers "not revoked"."""

    def __init__(self, store: Store, request: web.Request) -> None:
        super().__init__(store)
        self._request = request

    async def is_revoked(self, family: str, jti: str) -> bool:
        try:
            return await self.inner.is_revoked(family, jti)
        except StoreUnavailable:
            self._request[REVOCATION_SKIPPED] = True
            _warning.emit()
            return False


class _RateLimitedWarning:
    def __init__(self, interval: float = 1.0) -> None:
        self.interval = interval
        self.last = float("-inf")
        self.suppressed = 0

    def emit(self) -> None:
        now = time.monotonic()
        if now - self.last < self.interval:
            self.suppressed += 1
            return
        log.warning(
            "store unavailable: serving requests on the token signature alone, revoked tokens are NOT refused "
            "(store.failure_mode fail_open; %d more such requests since the last warning)",
            self.suppressed,
        )
        self.last, self.suppressed = now, 0


_warning = _RateLimitedWarning()
