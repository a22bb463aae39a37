"""One bounded map of entries that end at a deadline: every cache on the request path is built on it.

Its users: the verified-token cache (``auth.tokens.VerifiedCache``), the
admission cache (``auth.admission_cache``), the identity signer's reuse
(``upstream.signed_identity``), the revocation cache's tables
(``stores.revocation_cache``) and the memory store's expiring records.

An entry counts while ``now < deadline``, on the clock its owner reads and
passes in (monotonic or wall, whichever its deadlines are on), so a test moves
the clock instead of sleeping. Full, the oldest entry (by insertion) goes
first; where every entry of a map has the same lifetime, that is also the one
that expires first, and ``purge`` drops expired entries from the old end.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Generic, Iterator, TypeVar

__all__ = ["TTLMap"]

K = TypeVar("K")
V = TypeVar("V")


class TTLMap(Generic[K, V]):
    __slots__ = ("limit", "_items")

    def __init__(self, limit: int | None) -> None:
        """``limit``: entries held at most; None for no bound (a store whose records must not be dropped)."""
        self.limit = limit
        self._items: OrderedDict[K, tuple[V, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[K]:
        return iter(list(self._items))

    def get(self, key: K, now: float) -> V | None:
        """The value of ``key`` while its deadline is ahead; an expired entry is dropped on the way."""
        entry = self._items.get(key)
        if entry is None:
            return None
        if now < entry[1]:
            return entry[0]
        del self._items[key]
        return None

    def holds(self, key: K, now: float) -> bool:
        return self.get(key, now) is not None

    def deadline(self, key: K) -> float | None:
        entry = self._items.get(key)
        return None if entry is None else entry[1]

    def put(self, key: K, value: V, deadline: float) -> float | None:
        """Set ``key`` (as the newest entry); the deadline of the entry dropped to make room, if one was."""
        items = self._items
        items.pop(key, None)
        if self.limit is not None and self.limit <= 0:
            return None
        items[key] = (value, deadline)
        if self.limit is None or len(items) <= self.limit:
            return None
        return items.popitem(last=False)[1][1]

    def pop(self, key: K) -> V | None:
        entry = self._items.pop(key, None)
        return None if entry is None else entry[0]

    def purge(self, now: float) -> None:
        """Drop the expired entries at the old end (all of them where lifetimes are equal)."""
        items = self._items
        while items and next(iter(items.values()))[1] <= now:
            items.popitem(last=False)

    def sweep(self, now: float) -> None:
        """Drop every expired entry, wherever it is (maps whose entries have different lifetimes)."""
        for key in [k for k, (_, deadline) in self._items.items() if deadline <= now]:
            del self._items[key]

    def alive(self, now: float) -> list[K]:
        """The keys whose deadline is ahead, oldest first."""
        return [k for k, (_, deadline) in self._items.items() if now < deadline]

    def clear(self) -> None:
        self._items.clear()
