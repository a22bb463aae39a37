"""Shared state: refresh-token families with their rotation, and the access-token deny list.

One interface (``Store``), two implementations: ``MemoryStore`` for a single
process and ``RedisStore`` so that many gateway instances act as one.
"""
from __future__ import annotations

from gateway.config import StoreSettings
from gateway.stores.base import (
    LimitStore,
    RevocationStore,
    Rotation,
    RotationOutcome,
    SessionStore,
    StateStore,
    Store,
    StoreUnavailable,
    WindowCount,
)
from gateway.stores.memory import MemoryStore

__all__ = [
    "LimitStore", "MemoryStore", "RevocationStore", "Rotation", "RotationOutcome", "SessionStore", "StateStore", "Store",
    "StoreUnavailable", "WindowCount", "create_store",
]


def create_store(settings: StoreSettings) -> Store:
    if settings.backend == "redis":
        from gateway.stores.redis import RedisStore

        assert settings.url is not None  # guaranteed by config validation
        return RedisStore(settings.url, prefix=settings.prefix, timeout=settings.timeout)
    return MemoryStore()
