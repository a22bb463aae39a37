"""The ``sql`` source: users in a legacy application's table (PostgreSQL, MySQL/MariaDB, SQLite).

The query returns one row per user with the columns ``login`` and
``password_hash``, optionally ``active`` and any claim columns; ``roles_query``
returns one role per row; ``flag_roles`` turns boolean columns into roles.
Presets fill these in for Django's ``auth_user`` and a generic ``users`` table;
any key given beside a preset overrides it.
"""
from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import replace
from typing import Any

from gateway.config import ConfigError
from gateway.config.sources import SqlSettings
from gateway.observe.logs import warn_repeated
from gateway.sources.base import Candidate, SourceUnavailable, user_claims
from gateway.sources.hashes import hash_format, needs_rehash
from gateway.sources.hashing import verify_off_loop
from gateway.sources.sql_drivers import Driver, compile_query, open_driver
from gateway.sources.users import _HASHING, User, hash_password

__all__ = ["PRESETS", "SqlSource"]

log = logging.getLogger("gateway.sources")

_DJANGO_USER = (
    "SELECT username AS login, password AS password_hash, is_active AS active, id AS user_id, email, "
    "first_name, last_name, is_staff, is_superuser FROM auth_user WHERE {column} = :login"
)
PRESETS: dict[str, dict[str, Any]] = {
    "django": {
        "query": _DJANGO_USER.format(column="username"),
        "query_by": {"email": _DJANGO_USER.format(column="email")},
        "roles_query": (
            "SELECT g.name FROM auth_group g JOIN auth_user_groups ug ON ug.group_id = g.id "
            "JOIN auth_user u ON u.id = ug.user_id WHERE u.username = :login ORDER BY g.name"
        ),
        "flag_roles": {"is_staff": "staff", "is_superuser": "superuser"},
        "claims": {"user_id": "user_id", "email": "email", "first_name": "first_name", "last_name": "last_name"},
        "rehash_query": "UPDATE auth_user SET password = :hash WHERE username = :login",
    },
    "generic": {
        "query": "SELECT username AS login, password_hash, active, email, roles FROM users WHERE username = :login",
        "query_by": {"email": "SELECT username AS login, password_hash, active, email, roles FROM users WHERE email = :login"},
        "claims": {"email": "email", "roles": "roles"},
        "rehash_query": "UPDATE users SET password_hash = :hash WHERE username = :login",
    },
}
_ROLE_SPLIT = re.compile(r"[,\s]+")


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in {"1", "t", "true", "y", "yes"}
    return bool(value)


class SqlSource:
    kind = "sql"
    rereads = True

    def __init__(self, settings: SqlSettings, name: str, driver: Driver | None = None) -> None:
        self.settings = settings
        self.name = name
        self.timeout = settings.timeout
        self.cache_ttl = settings.cache
        preset = PRESETS.get(settings.preset or "", {})
        fields = settings.model_fields_set

        def pick(key: str) -> Any:
            return getattr(settings, key) if key in fields or key not in preset else preset[key]

        self.driver = driver or open_driver(settings.url.get_secret_value(), settings.pool_size, settings.timeout)
        dialect = self.driver.dialect
        self.query = compile_query(pick("query"), dialect)
        self.query_by = {claim: compile_query(q, dialect) for claim, q in {**pick("query_by")}.items()}
        roles_query = pick("roles_query")
        self.roles_query = compile_query(roles_query, dialect) if roles_query else None
        self.flag_roles: dict[str, str] = dict(pick("flag_roles"))
        self.claims: dict[str, str] = dict(pick("claims"))
        rehash = pick("rehash_query")
        self.rehash_query = compile_query(rehash, dialect) if settings.rehash_on_login and rehash else None
        self.django_format = settings.preset == "django"
        if settings.costliest_hash is not None and hash_format(settings.costliest_hash) is None:
            raise ConfigError([f"users ({name}).costliest_hash: not a hash format the gateway checks"])

    async def _fetch(self, query: tuple[str, list[str]], params: dict[str, Any]) -> list[dict[str, Any]]:
        try:
            return await self.driver.fetch(query[0], query[1], params)
        except SourceUnavailable:
            raise
        except Exception as exc:  # noqa: BLE001 - every driver error means "cannot answer now"
            warn_repeated(log, "user source %s: query failed (%s)", self.name, type(exc).__name__)
            raise SourceUnavailable(self.name) from None

    async def _row(self, login: str, by: str) -> dict[str, Any] | None:
        query = self.query if by == "username" else self.query_by.get(by)
        if query is None or "\x00" in login:
            return None  # no lookup by that claim here; a NUL is in no SQL text column (PostgreSQL refuses it)
        rows = await self._fetch(query, {"login": login})
        if len(rows) != 1:
            if len(rows) > 1:
                warn_repeated(log, "user source %s: a login matched %d rows; refused as unknown", self.name, len(rows))
            return None
        row = rows[0]
        if "login" not in row or "password_hash" not in row:
            warn_repeated(log, "user source %s: the query must return the columns login and password_hash", self.name,
                          level=logging.ERROR)
            raise SourceUnavailable(self.name)
        return row

    @staticmethod
    def _active(row: dict[str, Any]) -> bool:
        return "active" not in row or _truthy(row["active"])

    async def _user(self, row: dict[str, Any]) -> User:
        username = str(row["login"])
        values = {claim: row.get(column) for claim, column in self.claims.items()}
        given = values.get("roles")
        if isinstance(given, str):
            values["roles"] = [r for r in _ROLE_SPLIT.split(given) if r]
        roles = list(values.get("roles") or [])
        if self.roles_query is not None:
            roles += [str(next(iter(r.values()))) for r in await self._fetch(self.roles_query, {"login": username})]
        roles += [role for column, role in self.flag_roles.items() if _truthy(row.get(column))]
        if roles or self.roles_query is not None or self.flag_roles:
            values["roles"] = list(dict.fromkeys(roles))
        return User(username, str(row["password_hash"] or ""), user_claims(values))

    async def find(self, login: str, by: str) -> Candidate | None:
        row = await self._row(login, by)
        if row is None:
            return None
        stored = str(row["password_hash"] or "")

        async def check(password: str) -> User | None:
            if not await verify_off_loop(stored, password) or not self._active(row):
                return None  # an inactive user costs the same hash, and is refused here, not by a later source
            user = await self._user(row)
            if self.rehash_query is not None and needs_rehash(stored):
                new_hash = await self._rehash(user.username, password)
                if new_hash is not None:  # the stored hash is now this one, and not by the user's doing
                    user = replace(user, password_hash=new_hash, rehashed_from=stored)
            return user

        return Candidate(check, stored)

    async def _rehash(self, username: str, password: str) -> str | None:
        """Write an argon2id hash back, and return it; a failure costs the upgrade (None), never the login."""
        assert self.rehash_query is not None
        new_hash = await asyncio.get_running_loop().run_in_executor(_HASHING, hash_password, password)
        if self.django_format:
            new_hash = "argon2" + new_hash  # Django's Argon2PasswordHasher reads it back
        try:
            await self.driver.execute(self.rehash_query[0], self.rehash_query[1], {"hash": new_hash, "login": username})
        except Exception as exc:  # noqa: BLE001
            warn_repeated(log, "user source %s: rehash failed (%s)", self.name, type(exc).__name__)
            return None
        return new_hash

    async def lookup(self, username: str) -> User | None:
        row = await self._row(username, "username")
        if row is None:
            return None
        if not self._active(row):
            return User(str(row["login"]), "", {}, disabled=True)  # known and inactive: the refresh is refused
        return await self._user(row)

    async def probe(self) -> str:
        """Connect and run the query once (for a login nobody has): proves the SQL and the columns."""
        await self._fetch(self.query, {"login": "\x01gateway-probe"})
        return "query ran"

    async def close(self) -> None:
        await self.driver.close()

    def names(self) -> list[str]:
        return []

    def held_hashes(self) -> list[str]:
        return [self.settings.costliest_hash] if self.settings.costliest_hash else []
