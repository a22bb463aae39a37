"""One price for every refused login: a decoy hash at least as costly as the costliest the sources hold.

The decoy is fixed when a chain is built (start, reload): the costliest, by a
measured check, of the gateway's own argon2id (``users.dummy_hash``), one hash
of each cost class in the users files, and each SQL source's
``costliest_hash``. A login that finds no user checks the password against
it. A refused login whose own check was cheaper than the decoy is topped up:
below ``COMPUTE_BELOW`` of the decoy's cost (a never-matching hash such as
Django's unusable ``!``, which costs nothing, or a fast legacy format: MD5,
SHA-1, SSHA, PBKDF2 with few rounds) it checks the decoy as well, real work
that a loaded machine slows down exactly like an unknown login's; above it,
it waits out the rest of the decoy's time. So a refused login costs between
one and 1.5 decoys, whoever asked, in whatever order: never the cost of
whichever user was looked up last.

Should a source hold a class costlier than the decoy by ``RAISE_ABOVE`` (no
``costliest_hash`` was configured for it), the first check of it makes that
hash the decoy from then on, in this process and across reloads, and the log
says once which class (its parameters, never a hash) and what to configure.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Iterable

from gateway.sources.hashes import cost_class
from gateway.sources.hashing import check_cost, verify_off_loop
from gateway.sources.users import dummy_hash

__all__ = ["Decoy"]

log = logging.getLogger("gateway.sources")

COMPUTE_BELOW = 0.5  # a refused check cheaper than this share of the decoy's cost checks the decoy as well
RAISE_ABOVE = 1.2  # a class this much costlier than the decoy becomes the decoy
SAMPLES = 2  # checks of each candidate class when a decoy is prepared (the fastest counts)
_NOT_A_PASSWORD = "\x00gateway decoy: no password is this"


class Decoy:
    hash: str  # what a refused login is checked against

    def __init__(self, candidates: Iterable[str] = (), previous: "Decoy | None" = None) -> None:
        classes = {cost_class(h): h for h in candidates if cost_class(h) != "never"}
        if previous is not None:  # a decoy raised before a reload stays raised
            classes.setdefault(cost_class(previous.hash), previous.hash)
        self._candidates = list(classes.values())
        self.hash = previous.hash if previous is not None else dummy_hash()
        self._lock: asyncio.Lock | None = None  # made on first use, inside the running loop
        self._prepared = False

    async def prepare(self) -> None:
        """Measure the candidates (those of a class not measured in this process yet) and keep the costliest."""
        if self._prepared:
            return
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._prepared:
                return
            for candidate in [dummy_hash(), *self._candidates]:
                for _ in range(SAMPLES if check_cost(candidate) is None else 0):
                    await verify_off_loop(candidate, _NOT_A_PASSWORD)
            self.hash = max([dummy_hash(), *self._candidates], key=lambda h: check_cost(h) or 0.0)
            self._prepared = True

    @property
    def cost(self) -> float:
        return check_cost(self.hash) or 0.0

    async def pay(self, password: str) -> None:
        """Check ``password`` against the decoy: the cost of a refused login; the answer is irrelevant."""
        await self.prepare()
        await verify_off_loop(self.hash, password)

    async def top_up(self, stored_hash: str | None, spent: float, password: str) -> None:
        """A refused check (of ``stored_hash``, or remote when None) that took ``spent``: made to cost the decoy."""
        known = check_cost(stored_hash) if stored_hash is not None else None
        cost, decoy = (spent if known is None else known), self.cost
        if cost < COMPUTE_BELOW * decoy:
            await self.pay(password)
        elif spent < decoy:
            await asyncio.sleep(decoy - spent)

    def consider(self, stored_hash: str) -> None:
        """A hash a real login was just checked against: if its class is costlier than the decoy, it becomes the decoy."""
        cost = check_cost(stored_hash)
        if cost is None or cost <= RAISE_ABOVE * self.cost:
            return
        log.warning(
            "a user source holds %s hashes, costlier than the login decoy (%.0f ms > %.0f ms): they are the decoy "
            "from now on; set costliest_hash on that source so every login costs the same from the start",
            cost_class(stored_hash), cost * 1000, self.cost * 1000,
        )
        self.hash = stored_hash
