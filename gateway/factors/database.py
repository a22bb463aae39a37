"""The credentials database: SQLite (stdlib ``sqlite3`` on one worker thread), PostgreSQL (asyncpg), MariaDB (aiomysql).

Statements are written once with ``:name`` parameters (``sources.sql_drivers.compile_query``
turns them into each driver's style); values always travel as parameters. ``execute``
answers the number of rows it changed, which is how single use is decided: of two
instances deleting the same one-time row, exactly one sees 1. Any driver failure is
``StoreUnavailable`` (503): a second factor that cannot be checked is refused, never skipped.
"""
from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterator, Protocol

from gateway.sources.sql_drivers import compile_query, database_url, mysql_pool, postgres_pool
from gateway.stores.base import StoreUnavailable

__all__ = ["Database", "open_database"]

Row = dict[str, Any]


def _unavailable(exc: BaseException) -> StoreUnavailable:
    return StoreUnavailable(f"The credentials store is unavailable ({type(exc).__name__})")


class Database(Protocol):
    dialect: str  # sqlite | postgresql | mysql

    async def fetch(self, query: str, **params: Any) -> list[Row]: ...
    async def execute(self, query: str, **params: Any) -> int: ...
    async def script(self, statements: list[str]) -> None: ...
    async def close(self) -> None: ...


class _Sqlite:
    """One connection on one thread: SQLite serialises writers anyway, and the event loop never blocks on it."""

    dialect = "sqlite"

    def __init__(self, path: str, timeout: float) -> None:
        self.path, self.timeout = path, timeout
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gw-credentials")
        self._conn: sqlite3.Connection | None = None

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None, check_same_thread=False)
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout={int(self.timeout * 1000)}")
            _wal(conn, self.timeout)  # several gateway processes on one file
            self._conn = conn
        return self._conn

    async def _run(self, work: Any) -> Any:
        try:
            return await asyncio.wait_for(asyncio.get_running_loop().run_in_executor(self._thread, work), self.timeout * 2)
        except (sqlite3.Error, OSError, TimeoutError) as exc:
            raise _unavailable(exc) from None

    async def fetch(self, query: str, **params: Any) -> list[Row]:
        text, names = compile_query(query, self.dialect)
        return await self._run(lambda: [dict(r) for r in self._connection().execute(text, {n: params[n] for n in names})])  # type: ignore[no-any-return]

    async def execute(self, query: str, **params: Any) -> int:
        text, names = compile_query(query, self.dialect)
        return await self._run(lambda: self._connection().execute(text, {n: params[n] for n in names}).rowcount)  # type: ignore[no-any-return]

    async def script(self, statements: list[str]) -> None:
        def run() -> None:
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE")
            try:
                for statement in statements:
                    conn.execute(statement)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

        await self._run(run)

    async def close(self) -> None:
        def shut() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        await asyncio.get_running_loop().run_in_executor(self._thread, shut)
        self._thread.shutdown(wait=False)


@contextlib.contextmanager
def _postgres_errors() -> Iterator[None]:
    """asyncpg's failures (its own exception classes, or the socket's) as ``StoreUnavailable``."""
    try:
        yield
    except (OSError, TimeoutError) as exc:
        raise _unavailable(exc) from None
    except Exception as exc:
        if type(exc).__module__.startswith("asyncpg"):
            raise _unavailable(exc) from None
        raise


class _Postgres:
    dialect = "postgresql"

    def __init__(self, dsn: str, pool_size: int, timeout: float) -> None:
        self._pool = postgres_pool(dsn, pool_size, timeout)
        self._get = self._pool.get

    async def fetch(self, query: str, **params: Any) -> list[Row]:
        text, names = compile_query(query, self.dialect)
        with _postgres_errors():
            rows = await (await self._get()).fetch(text, *(params[n] for n in names))
        return [dict(r) for r in rows]

    async def execute(self, query: str, **params: Any) -> int:
        text, names = compile_query(query, self.dialect)
        with _postgres_errors():
            status = await (await self._get()).execute(text, *(params[n] for n in names))
        last = str(status).rsplit(" ", 1)[-1]
        return int(last) if last.isdigit() else 0

    async def script(self, statements: list[str]) -> None:
        with _postgres_errors():
            async with (await self._get()).acquire() as conn, conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock(722201)")  # one migrating instance at a time
                for statement in statements:
                    await conn.execute(statement)

    async def close(self) -> None:
        await self._pool.close()


class _MySql:
    dialect = "mysql"

    def __init__(self, url: str, pool_size: int, timeout: float) -> None:
        self.timeout = timeout
        self._pool = mysql_pool(url, pool_size, timeout)
        self._get = self._pool.get

    async def _cursor_run(self, query: str, params: dict[str, Any], fetch: bool) -> Any:
        import aiomysql

        text, names = compile_query(query, self.dialect)
        try:
            pool = await self._get()
            async with pool.acquire() as conn, conn.cursor(aiomysql.DictCursor) as cursor:
                changed = await asyncio.wait_for(cursor.execute(text, {n: params[n] for n in names}), self.timeout)
                return list(await cursor.fetchall()) if fetch else changed
        except (OSError, TimeoutError, aiomysql.OperationalError, aiomysql.InterfaceError) as exc:
            raise _unavailable(exc) from None

    async def fetch(self, query: str, **params: Any) -> list[Row]:
        return await self._cursor_run(query, params, True)  # type: ignore[no-any-return]

    async def execute(self, query: str, **params: Any) -> int:
        return int(await self._cursor_run(query, params, False))

    async def script(self, statements: list[str]) -> None:
        # MariaDB commits DDL implicitly: a named lock on one connection keeps two instances from migrating at once.
        import aiomysql

        try:
            pool = await self._get()
            async with pool.acquire() as conn, conn.cursor() as cursor:
                await cursor.execute("SELECT GET_LOCK('gw_credentials_migrate', %s)", (int(self.timeout) + 1,))
                try:
                    for statement in statements:
                        await cursor.execute(statement.replace("%", "%%"))
                finally:
                    await cursor.execute("SELECT RELEASE_LOCK('gw_credentials_migrate')")
        except (OSError, TimeoutError, aiomysql.OperationalError, aiomysql.InterfaceError) as exc:
            raise _unavailable(exc) from None

    async def close(self) -> None:
        await self._pool.close()


def _wal(conn: sqlite3.Connection, timeout: float) -> None:
    """WAL mode; switching to it may answer "database is locked" at once, busy handler or not, while another
    connection (a second instance starting) holds the file: retried until ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def open_database(url: str, pool_size: int, timeout: float) -> Database:
    """A database for ``url``; nothing connects until the first statement."""
    dialect, target = database_url(url)
    if dialect == "postgresql":
        return _Postgres(target, pool_size, timeout)
    if dialect == "mysql":
        return _MySql(target, pool_size, timeout)
    return _Sqlite(target, timeout)
