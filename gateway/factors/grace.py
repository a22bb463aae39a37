"""The enrolment grace period (``second_factor.grace_period``), remembered in the credentials database.

A user whom policy requires to have a second factor but who has none may log in with
the password alone until ``grace_period`` after the first such login. That first moment
is written once (an insert that loses to an earlier one on every database, so two
instances agree on it) in ``gw_enrolment_grace`` and kept after the user enrols: the
window is the user's first, never renewed by a later login, a removed factor or an
operator's reset, unless the operator asks for a new one (``gateway mfa reset --grace``
deletes the row). The grace ends once: when a login comes after the deadline, or at a
reset (``ended_at`` is set by exactly one caller, which reports it).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

from gateway.factors.database import Database

__all__ = ["Grace", "GraceRecords"]


@dataclass(frozen=True, slots=True)
class Grace:
    """A user's grace record: when it started (seconds) and when it ended (None while it runs)."""

    started_at: int
    ended_at: int | None

    def deadline(self, period: float) -> int:
        return self.started_at + int(period)

    def open_at(self, now: float, period: float) -> bool:
        return self.ended_at is None and now < self.deadline(period)


def _insert_once(dialect: str) -> str:
    values = "(subject, started_at, ended_at) VALUES (:subject, :started, :ended)"
    if dialect == "postgresql":
        return f"INSERT INTO gw_enrolment_grace {values} ON CONFLICT (subject) DO NOTHING"
    if dialect == "mysql":
        return f"INSERT IGNORE INTO gw_enrolment_grace {values}"
    return f"INSERT OR IGNORE INTO gw_enrolment_grace {values}"


class GraceRecords:
    """The rows of ``gw_enrolment_grace``; the policy (how long, who) is the caller's."""

    def __init__(self, db: Database, clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self.clock = clock

    async def get(self, subject: str) -> Grace | None:
        rows = await self.db.fetch("SELECT started_at, ended_at FROM gw_enrolment_grace WHERE subject = :subject",
                                   subject=subject)
        if not rows:
            return None
        ended = rows[0]["ended_at"]
        return Grace(int(rows[0]["started_at"]), None if ended is None else int(ended))

    async def begin(self, subject: str) -> tuple[Grace, bool]:
        """The user's record, started now unless an earlier login started it; True if this call started it."""
        found = await self.get(subject)
        if found is not None:
            return found, False
        now = int(self.clock())
        started = await self.db.execute(_insert_once(self.db.dialect), subject=subject, started=now, ended=None) == 1
        found = await self.get(subject)
        assert found is not None
        return found, started

    async def end(self, subject: str) -> bool:
        """End a running grace now; True for exactly one caller (the one that reports it)."""
        return await self.db.execute(
            "UPDATE gw_enrolment_grace SET ended_at = :now WHERE subject = :subject AND ended_at IS NULL",
            now=int(self.clock()), subject=subject) == 1

    async def close(self, subject: str) -> bool:
        """An operator's reset: no grace from now on (a user who never had one gets an ended record); True if a
        running grace ended."""
        if await self.get(subject) is None:
            now = int(self.clock())
            await self.db.execute(_insert_once(self.db.dialect), subject=subject, started=now, ended=now)
        return await self.end(subject)

    async def forget(self, subject: str) -> bool:
        """An operator's reset that grants a new window: the next login without a factor starts it."""
        return await self.db.execute("DELETE FROM gw_enrolment_grace WHERE subject = :subject", subject=subject) == 1
