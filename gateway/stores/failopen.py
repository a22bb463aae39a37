"""``store.failure_mode: fail_open``: the revocation check of a proxied request, when Redis is unreachable.

The request goes on with the checks that need no store (signature, expiry,
issuer, audience, type); only "is this token revoked?" is skipped. It is loud:
a WARNING at most once a second (with the count since the last one, so an
outage does not flood the log: ``observe.logs.warn_repeated``), the request's access line says
``"revocation_check": "skipped"``, and a metric counts such requests. The
token endpoints never fail open.
"""
from __future__ import annotations

import logging

from aiohttp import web

from gateway.context import REVOCATION_SKIPPED
from gateway.observe.logs import warn_repeated
from gateway.stores import Store, StoreUnavailable
from gateway.stores.base import StoreWrapper

__all__ = ["FailOpenRevocations", "revocation_store"]

log = logging.getLogger("gateway.store")
FAIL_OPEN_WARNING_INTERVAL = 1.0  # seconds


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
            warn_repeated(log, "store unavailable: serving requests on the token signature alone, revoked tokens are "
                          "NOT refused (store.failure_mode fail_open)", interval=FAIL_OPEN_WARNING_INTERVAL)
            return False
