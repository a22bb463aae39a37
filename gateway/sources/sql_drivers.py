"""One small interface over three async drivers: asyncpg, aiomysql (MySQL and MariaDB), aiosqlite.

Why the drivers and not SQLAlchemy: the gateway runs three fixed statements
(find, roles, rehash) and needs a pool, a timeout and parameters; each driver
gives exactly that, SQLAlchemy's asyncio layer would add a large dependency
and a second pool on top of the same drivers.

Queries are written once with ``:name`` parameters; ``compile_query`` turns
them into the driver's own placeholders (``$1``, ``%(name)s``, ``:name``).
Values always travel as parameters, never inside the SQL text.
"""
from __future__ import annotations

import asyncio
import re
from typing import Any, Awaitable, Callable, Protocol
from urllib.parse import quote, unquote, urlsplit

from gateway.sources.base import SourceUnavailable

__all__ = ["Driver", "LazyPool", "compile_query", "database_url", "mysql_pool", "open_driver", "postgres_pool"]

_PARAM = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")
Row = dict[str, Any]


def compile_query(query: str, dialect: str) -> tuple[str, list[str]]:
    """The query in the driver's parameter style, and the parameter names in order of appearance."""
    names: list[str] = []

    def replace(match: re.Match[str]) -> str:
        names.append(match.group(1))
        if dialect == "postgresql":
            return f"${len(names)}"
        if dialect == "mysql":
            return f"%({match.group(1)})s"
        return f":{match.group(1)}"

    if dialect == "mysql":
        query = query.replace("%", "%%")  # pymysql formats the text: a literal % must be doubled
    return _PARAM.sub(replace, query), names


class LazyPool:
    """A driver's connection pool, made on first use (a database down at start is no crash) and closed once.

    The user sources here and the credentials database (gateway/factors/database.py) both hold theirs in one.
    """

    def __init__(self, create: Callable[[], Awaitable[Any]], close: Callable[[Any], Awaitable[None]]) -> None:
        self._create, self._close = create, close
        self._pool: Any = None
        self._lock = asyncio.Lock()

    async def get(self) -> Any:
        async with self._lock:
            if self._pool is None:
                self._pool = await self._create()
        return self._pool

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await self._close(pool)


def postgres_pool(dsn: str, size: int, timeout: float) -> LazyPool:
    async def create() -> Any:
        import asyncpg

        return await asyncpg.create_pool(dsn, min_size=0, max_size=size, timeout=timeout, command_timeout=timeout)

    async def close(pool: Any) -> None:
        await pool.close()

    return LazyPool(create, close)


def mysql_pool(url: str, size: int, timeout: float) -> LazyPool:
    """MySQL or MariaDB (aiomysql): autocommit, utf8mb4, connections recycled after 5 minutes."""
    parts = urlsplit(url)
    options: dict[str, Any] = {
        "host": parts.hostname or "127.0.0.1",
        "port": parts.port or 3306,
        "user": unquote(parts.username or ""),
        "password": unquote(parts.password or ""),
        "db": parts.path.lstrip("/") or None,
        "connect_timeout": timeout,
        "autocommit": True,
        "charset": "utf8mb4",
    }

    async def create() -> Any:
        import aiomysql

        return await aiomysql.create_pool(minsize=0, maxsize=size, pool_recycle=300, **options)

    async def close(pool: Any) -> None:
        pool.close()
        await pool.wait_closed()

    return LazyPool(create, close)


class Driver(Protocol):
    dialect: str

    async def fetch(self, query: str, names: list[str], params: dict[str, Any]) -> list[Row]: ...
    async def execute(self, query: str, names: list[str], params: dict[str, Any]) -> None: ...
    async def close(self) -> None: ...


class _Postgres:
    dialect = "postgresql"

    def __init__(self, dsn: str, pool_size: int, timeout: float) -> None:
        self._pool = postgres_pool(dsn, pool_size, timeout)
        self._get = self._pool.get

    async def fetch(self, query: str, names: list[str], params: dict[str, Any]) -> list[Row]:
        pool = await self._get()
        rows = await pool.fetch(query, *(params[n] for n in names))
        return [dict(r) for r in rows]

    async def execute(self, query: str, names: list[str], params: dict[str, Any]) -> None:
        pool = await self._get()
        await pool.execute(query, *(params[n] for n in names))

    async def close(self) -> None:
        await self._pool.close()


class _MySql:
    dialect = "mysql"

    def __init__(self, url: str, pool_size: int, timeout: float) -> None:
        self._pool = mysql_pool(url, pool_size, timeout)
        self._get = self._pool.get

    async def fetch(self, query: str, names: list[str], params: dict[str, Any]) -> list[Row]:
        import aiomysql

        pool = await self._get()
        async with pool.acquire() as conn, conn.cursor(aiomysql.DictCursor) as cursor:
            await cursor.execute(query, {n: params[n] for n in names})
            return list(await cursor.fetchall())

    async def execute(self, query: str, names: list[str], params: dict[str, Any]) -> None:
        pool = await self._get()
        async with pool.acquire() as conn, conn.cursor() as cursor:
            await cursor.execute(query, {n: params[n] for n in names})

    async def close(self) -> None:
        await self._pool.close()


class _Sqlite:
    dialect = "sqlite"

    def __init__(self, path: str, timeout: float) -> None:
        self.path, self.timeout = path, timeout

    async def fetch(self, query: str, names: list[str], params: dict[str, Any]) -> list[Row]:
        import aiosqlite

        async with aiosqlite.connect(f"file:{quote(self.path)}?mode=ro", uri=True, timeout=self.timeout) as db:
            db.row_factory = aiosqlite.Row
            async with db.execute(query, {n: params[n] for n in names}) as cursor:
                return [dict(r) for r in await cursor.fetchall()]

    async def execute(self, query: str, names: list[str], params: dict[str, Any]) -> None:
        import aiosqlite

        async with aiosqlite.connect(self.path, timeout=self.timeout) as db:
            await db.execute(query, {n: params[n] for n in names})
            await db.commit()

    async def close(self) -> None:
        return None


def open_driver(url: str, pool_size: int, timeout: float) -> Driver:
    """A driver for ``url``; nothing connects until the first query (a database down at start is no crash)."""
    try:
        dialect, target = database_url(url)
    except ValueError as exc:
        raise SourceUnavailable(str(exc)) from None
    if dialect == "postgresql":
        return _Postgres(target, pool_size, timeout)
    if dialect == "mysql":
        return _MySql(target, pool_size, timeout)
    return _Sqlite(target, timeout)


def database_url(url: str) -> tuple[str, str]:
    """``(dialect, what its driver opens)`` for a database URL: ``postgresql`` and its DSN (any ``+driver``
    suffix dropped), ``mysql`` (also ``mariadb``) and the URL, ``sqlite`` and the file's path; else ValueError."""
    scheme = url.partition("://")[0].split("+")[0]
    if scheme in {"postgresql", "postgres"}:
        return "postgresql", "postgresql://" + url.partition("://")[2]
    if scheme in {"mysql", "mariadb"}:
        return "mysql", url
    if scheme == "sqlite":
        return "sqlite", url[len("sqlite:///"):]
    raise ValueError(f"unsupported database scheme {scheme}")
