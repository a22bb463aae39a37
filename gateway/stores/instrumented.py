"""A store wrapper that times every operation and counts the ones that fail.

It forwards whatever the wrapped store offers (the interface grows with
features such as login throttling), so no backend has to know about metrics
and no new operation goes unmeasured.
"""
from __future__ import annotations

import functools
import inspect
import time
from typing import Any, Protocol

from gateway.stores.base import Store, StoreUnavailable

__all__ = ["InstrumentedStore", "StoreObserver"]

_UNTIMED = frozenset({"start", "close"})


class StoreObserver(Protocol):
    def store_call(self, operation: str, seconds: float, failed: bool) -> None: ...


class InstrumentedStore:
    """Behaves as the wrapped ``Store`` (it is registered as one)."""

    def __init__(self, inner: Store, observer: StoreObserver) -> None:
        self.inner = inner
        self._observer = observer

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if name.startswith("_") or name in _UNTIMED or not inspect.iscoroutinefunction(attr):
            return attr
        timed = _timed(attr, name, self._observer)
        setattr(self, name, timed)  # found directly from now on
        return timed


def _timed(method: Any, name: str, observer: StoreObserver) -> Any:
    @functools.wraps(method)
    async def call(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        failed = False
        try:
            return await method(*args, **kwargs)
        except StoreUnavailable:
            failed = True
            raise
        finally:
            observer.store_call(name, time.perf_counter() - started, failed)

    return call


Store.register(InstrumentedStore)
