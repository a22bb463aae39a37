"""The service keys' table (``gw_service_keys``, migration 2): one row per key, by its unique name.

A key itself is never stored: only its SHA-256 (``digest``, which a presented key
is looked up by) and its first characters (``prefix``, to tell keys apart in a
listing). A revoked key keeps its row, with ``revoked_at``, so that its name is
not reused by accident and the listing shows when it ended.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any, Mapping

from gateway.factors.database import Database, Row

__all__ = ["ServiceKeyRecord", "ServiceKeyTable"]

_COLUMNS = "name, digest, prefix, owner, claims, created_at, expires_at, last_used_at, revoked_at"


@dataclass(frozen=True, slots=True)
class ServiceKeyRecord:
    name: str
    prefix: str
    owner: str
    claims: Mapping[str, Any]
    created_at: int
    expires_at: int | None = None
    last_used_at: int | None = None
    revoked_at: int | None = None
    digest: str = field(default="", repr=False)

    @classmethod
    def from_row(cls, row: Row) -> "ServiceKeyRecord":
        try:
            claims = json.loads(row["claims"])
        except (TypeError, ValueError):
            claims = {}
        return cls(
            name=str(row["name"]), prefix=str(row["prefix"]), owner=str(row["owner"]),
            claims=claims if isinstance(claims, dict) else {}, created_at=int(row["created_at"]),
            expires_at=_int(row["expires_at"]), last_used_at=_int(row["last_used_at"]), revoked_at=_int(row["revoked_at"]),
            digest=str(row["digest"]),
        )

    def expired(self, now: float) -> bool:
        return self.expires_at is not None and now >= self.expires_at

    def as_dict(self) -> dict[str, Any]:
        """What the admin API shows: never the digest."""
        return {"name": self.name, "prefix": self.prefix, "owner": self.owner, "claims": dict(self.claims),
                "created": self.created_at, "expires": self.expires_at, "last_used": self.last_used_at,
                "revoked": self.revoked_at}


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


class ServiceKeyTable:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def create(self, record: ServiceKeyRecord) -> bool:
        """False when the name is taken (by a live or a revoked key)."""
        if await self.db.fetch("SELECT name FROM gw_service_keys WHERE name = :name", name=record.name):
            return False
        try:
            await self.db.execute(
                f"INSERT INTO gw_service_keys ({_COLUMNS}) VALUES (:name, :digest, :prefix, :owner, :claims, :created,"
                " :expires, NULL, NULL)",
                name=record.name, digest=record.digest, prefix=record.prefix, owner=record.owner,
                claims=json.dumps(dict(record.claims), separators=(",", ":")), created=record.created_at,
                expires=record.expires_at,
            )
        except Exception as exc:  # two admins creating one name at once: the primary key decides
            if await self.db.fetch("SELECT name FROM gw_service_keys WHERE name = :name", name=record.name):
                return False
            raise exc
        return True

    async def by_digest(self, digest: str) -> ServiceKeyRecord | None:
        rows = await self.db.fetch(f"SELECT {_COLUMNS} FROM gw_service_keys WHERE digest = :digest", digest=digest)
        return ServiceKeyRecord.from_row(rows[0]) if rows else None

    async def listing(self) -> list[ServiceKeyRecord]:
        rows = await self.db.fetch(f"SELECT {_COLUMNS} FROM gw_service_keys ORDER BY name")
        return [ServiceKeyRecord.from_row(r) for r in rows]

    async def revoke(self, name: str, now: int | None = None) -> bool:
        """True when this call ended a live key; False for an unknown or already revoked one."""
        when = int(time.time()) if now is None else now
        return await self.db.execute(
            "UPDATE gw_service_keys SET revoked_at = :now WHERE name = :name AND revoked_at IS NULL", now=when, name=name
        ) == 1

    async def touch(self, name: str, now: int) -> None:
        """Record a use (the caller writes at most once a minute per key)."""
        await self.db.execute("UPDATE gw_service_keys SET last_used_at = :now WHERE name = :name", now=now, name=name)
