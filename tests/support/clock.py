"""Time a test moves instead of waiting for: the memory store reads its ``clock`` (gateway/stores/memory.py)."""
from __future__ import annotations

import asyncio

from gateway.stores import Store
from gateway.stores.memory import MemoryStore


class FakeClock:
    """Monotonic seconds that pass only when the test says so."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def memory_store() -> MemoryStore:
    return MemoryStore(clock=FakeClock())


async def elapse(store: Store, seconds: float) -> None:
    """Let ``seconds`` pass for ``store``: a memory store's fake clock is moved; Redis's own clock is waited for."""
    clock = store.clock if isinstance(store, MemoryStore) else None
    if isinstance(clock, FakeClock):
        clock.advance(seconds)
    else:
        await asyncio.sleep(seconds)
