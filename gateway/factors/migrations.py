"""The credentials schema, created and migrated by the gateway itself when it starts (docs/second-factor.md).

Plain SQL, one numbered migration at a time, each recorded in ``gw_schema_version``.
Every statement is idempotent (``IF NOT EXISTS``) and the version row is written only
if missing, so two instances starting together (under the database's lock: an
advisory lock on PostgreSQL, ``GET_LOCK`` on MariaDB, a write transaction on SQLite)
end with one schema. A database whose version is newer than this gateway knows is
refused: an older gateway must not write rows a newer schema reads differently.
"""
from __future__ import annotations

import time

from gateway.factors.database import Database

__all__ = ["LATEST", "SchemaTooNew", "schema_version", "upgrade"]

VERSION_TABLE = (
    "CREATE TABLE IF NOT EXISTS gw_schema_version (version INTEGER NOT NULL PRIMARY KEY, applied_at BIGINT NOT NULL)"
)

# Version -> statements. Types every dialect reads alike: VARCHAR with a length (a MariaDB key needs one), TEXT, BIGINT.
MIGRATIONS: dict[int, list[str]] = {
    1: [
        # One row per credential: kind totp (sealed secret), totp_pending (sealed, until confirmed), recovery (argon2 hash).
        # The same table will hold other long-lived credentials (service keys) under other kinds.
        "CREATE TABLE IF NOT EXISTS gw_credentials ("
        " subject VARCHAR(255) NOT NULL,"
        " kind VARCHAR(32) NOT NULL,"
        " name VARCHAR(64) NOT NULL,"
        " secret TEXT NOT NULL,"
        " created_at BIGINT NOT NULL,"
        " PRIMARY KEY (subject, kind, name))",
    ],
    2: [
        # Service keys (docs/service-keys.md): only the SHA-256 of a key and its first characters are kept.
        "CREATE TABLE IF NOT EXISTS gw_service_keys ("
        " name VARCHAR(64) NOT NULL PRIMARY KEY,"
        " digest CHAR(64) NOT NULL UNIQUE,"
        " prefix VARCHAR(16) NOT NULL,"
        " owner VARCHAR(255) NOT NULL,"
        " claims TEXT NOT NULL,"
        " created_at BIGINT NOT NULL,"
        " expires_at BIGINT NULL,"
        " last_used_at BIGINT NULL,"
        " revoked_at BIGINT NULL)",
    ],
    3: [
        # WebAuthn authenticators (docs/second-factor.md), several per user, each with a name. The credential id can be
        # longer than a key may be on MariaDB: the row's key is its SHA-256 (hex), the id itself is kept base64url.
        "CREATE TABLE IF NOT EXISTS gw_webauthn_credentials ("
        " id_digest CHAR(64) NOT NULL PRIMARY KEY,"
        " credential_id TEXT NOT NULL,"
        " subject VARCHAR(255) NOT NULL,"
        " name VARCHAR(64) NOT NULL,"
        " public_key TEXT NOT NULL,"
        " sign_count BIGINT NOT NULL,"
        " aaguid VARCHAR(36) NOT NULL,"
        " transports VARCHAR(255) NOT NULL,"
        " multi_device INTEGER NOT NULL,"
        " created_at BIGINT NOT NULL,"
        " last_used_at BIGINT NULL,"
        " UNIQUE (subject, name))",
    ],
    4: [
        # The enrolment grace period (second_factor.grace_period): when a user whom policy requires to have a factor
        # first logged in without one, and when that grace ended (NULL while it runs). Kept after the user enrols, so
        # the first moment stays the first: a later reset or a removed factor never opens a new window by itself.
        "CREATE TABLE IF NOT EXISTS gw_enrolment_grace ("
        " subject VARCHAR(255) NOT NULL PRIMARY KEY,"
        " started_at BIGINT NOT NULL,"
        " ended_at BIGINT NULL)",
    ],
}
LATEST = max(MIGRATIONS)


class SchemaTooNew(Exception):
    """The database was migrated by a newer gateway."""


def _recorded(dialect: str, version: int, now: int) -> str:
    """The version row, unless an instance that migrated at the same time wrote it first.

    Literals, not parameters: the script runs raw statements; both values are the gateway's own integers.
    """
    values = f"(version, applied_at) VALUES ({int(version)}, {int(now)})"
    if dialect == "postgresql":
        return f"INSERT INTO gw_schema_version {values} ON CONFLICT (version) DO NOTHING"
    if dialect == "mysql":
        return f"INSERT IGNORE INTO gw_schema_version {values}"
    return f"INSERT OR IGNORE INTO gw_schema_version {values}"


async def schema_version(db: Database) -> int:
    rows = await db.fetch("SELECT MAX(version) AS version FROM gw_schema_version")
    return int(rows[0]["version"] or 0) if rows else 0


async def upgrade(db: Database) -> int:
    """Bring the schema to ``LATEST``; the version it is at afterwards."""
    now = int(time.time())
    await db.script([VERSION_TABLE])
    current = await schema_version(db)
    if current > LATEST:
        raise SchemaTooNew(f"the credentials database is at schema version {current}; this gateway knows up to {LATEST}")
    for version in sorted(v for v in MIGRATIONS if v > current):
        await db.script([*MIGRATIONS[version], _recorded(db.dialect, version, now)])
    return await schema_version(db)
