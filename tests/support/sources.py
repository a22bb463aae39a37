"""Real servers for the identity-source tests: PostgreSQL, MariaDB, slapd, a relay that can fail.

PostgreSQL and MariaDB are always the tests' own, like redis-server and slapd: a throwaway cluster
(``initdb``) and a throwaway MariaDB (``mariadb-install-db``) in temporary directories, each on a
free port with its unix socket in its directory, started once per test session (per pytest-xdist
worker) when a test first asks for one, stopped and removed at the end. The machine's own servers,
if any run, are never used nor touched. Each source fixture makes its own databases (``gw_test_<random>``).
"""
from __future__ import annotations

import asyncio
import contextlib
import glob
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.support.ports import free_port

ROOT = Path(__file__).resolve().parent.parent.parent
START_BOUND = 60.0  # seconds a database may take to accept connections (2 loaded cores)


def listening(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def wait_listening(port: int, proc: subprocess.Popen[bytes] | None = None, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not listening(port):
        if (proc is not None and proc.poll() is not None) or time.monotonic() > deadline:
            raise RuntimeError(f"nothing came to listen on 127.0.0.1:{port}")
        time.sleep(0.05)


def _binary(name: str, patterns: tuple[str, ...] = ()) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for pattern in patterns:
        matches = sorted(glob.glob(pattern))
        if matches:
            return matches[-1]
    return None


@dataclass
class Database:
    """A database server of the tests' own, in ``own_dir`` (removed at stop)."""

    engine: str  # postgresql | mysql
    port: int
    user: str
    proc: subprocess.Popen[bytes]
    own_dir: Path
    started_in: float = 0.0  # seconds from initdb/install-db to the first accepted connection

    def url(self, name: str) -> str:
        return f"{self.engine}://{self.user}@127.0.0.1:{self.port}/{name}"

    def connect(self, name: str | None = None) -> Any:
        if self.engine == "postgresql":
            import psycopg

            return psycopg.connect(host="127.0.0.1", port=self.port, user=self.user, dbname=name or "postgres", autocommit=True,
                                   connect_timeout=5)
        import pymysql

        return pymysql.connect(host="127.0.0.1", port=self.port, user=self.user, password="", database=name, autocommit=True,
                               connect_timeout=5)

    def create(self) -> str:
        name = f"gw_test_{secrets.token_hex(4)}"
        with contextlib.closing(self.connect()) as conn, contextlib.closing(conn.cursor()) as cur:
            cur.execute(f"CREATE DATABASE {name}")  # a name the tests made, never input
        return name

    def run(self, name: str, *statements: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        rows: list[tuple[Any, ...]] = []
        with contextlib.closing(self.connect(name)) as conn, contextlib.closing(conn.cursor()) as cur:
            for statement in statements:
                cur.execute(statement, params or None)
                if cur.description:
                    rows = list(cur.fetchall())
        return rows

    def wait_ready(self, started: float) -> "Database":
        """Until the server accepts a connection (listening is not enough: PostgreSQL answers "starting up" first)."""
        deadline = time.monotonic() + START_BOUND
        while True:
            try:
                self.connect().close()
                break
            except Exception:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    log = self.own_dir / f"{self.engine}.log"
                    text = log.read_text(errors="replace")[-3000:] if log.exists() else ""
                    self.stop()
                    raise RuntimeError(f"{self.engine} did not start on 127.0.0.1:{self.port}:\n{text}") from None
                time.sleep(0.05)
        self.started_in = time.monotonic() - started
        return self

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        shutil.rmtree(self.own_dir, ignore_errors=True)


def _unprivileged(tmp: Path) -> dict[str, Any]:
    """Popen arguments that run a server as an ordinary user owning ``tmp`` (when the tests run as root)."""
    if os.getuid() != 0:
        return {}
    import pwd

    for name in ("postgres", "nobody"):
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        for path in [tmp, *tmp.rglob("*")]:
            os.chown(path, entry.pw_uid, entry.pw_gid)
        return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}
    pytest.fail("the tests run as root and there is neither a postgres nor a nobody user to run PostgreSQL as")


def _run(args: list[str], what: str, **kwargs: Any) -> None:
    result = subprocess.run(args, capture_output=True, stdin=subprocess.DEVNULL, timeout=120, **kwargs)
    if result.returncode != 0:
        raise RuntimeError(f"{what} failed ({result.returncode}):\n{(result.stdout + result.stderr).decode(errors='replace')[-3000:]}")


def start_postgres() -> Database:
    """A throwaway PostgreSQL cluster: ``initdb`` (trust, user postgres) into a new temporary directory, the
    server on a free loopback port with its unix socket in that directory; as an ordinary user when the tests
    run as root (PostgreSQL refuses root). Durability is off: nothing here has to survive a crash."""
    initdb = _binary("initdb", ("/usr/lib/postgresql/*/bin/initdb",))
    if initdb is None:
        pytest.fail("PostgreSQL is not installed: run the README's test command (make test)")
    started = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="gw-test-pg-"))  # not under pytest's 0700 base: the server's user must reach it
    os.chmod(tmp, 0o755)
    data, port = tmp / "data", free_port()
    owner = _unprivileged(tmp)
    try:
        _run([initdb, "-D", str(data), "-U", "postgres", "-A", "trust", "--no-sync", "--no-instructions", "-E", "UTF8",
              "--locale=C"], "initdb", **owner)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    postgres = str(Path(initdb).with_name("postgres"))
    with open(tmp / "postgresql.log", "wb") as log:
        proc = subprocess.Popen([postgres, "-D", str(data), "-p", str(port), "-k", str(tmp), "-h", "127.0.0.1",
                                 "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"],
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, **owner)
    return Database("postgresql", port, "postgres", proc, tmp).wait_ready(started)


def start_mariadb() -> Database:
    """A throwaway MariaDB: ``mariadb-install-db`` (root without a password) into a new temporary directory,
    ``mariadbd`` on a free loopback port with its socket and pid file there; ``--no-defaults``, so nothing
    of the machine's /etc/mysql applies. Durability is off as for PostgreSQL."""
    install, server = _binary("mariadb-install-db"), _binary("mariadbd", ("/usr/sbin/mariadbd",))
    if install is None or server is None:
        pytest.fail("MariaDB is not installed: run the README's test command (make test)")
    started = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="gw-test-mariadb-"))
    data, port = tmp / "data", free_port()
    import pwd

    user = f"--user={pwd.getpwuid(os.getuid()).pw_name}"  # as root mariadbd needs to be told that root is meant
    try:
        _run([install, "--no-defaults", f"--datadir={data}", "--auth-root-authentication-method=normal", "--skip-test-db",
              "--skip-name-resolve", user], "mariadb-install-db")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    with open(tmp / "mysql.log", "wb") as log:
        proc = subprocess.Popen([server, "--no-defaults", f"--datadir={data}", f"--port={port}", "--bind-address=127.0.0.1",
                                 f"--socket={tmp / 'mariadb.sock'}", f"--pid-file={tmp / 'mariadb.pid'}", user,
                                 "--skip-name-resolve", "--skip-log-bin", "--innodb-buffer-pool-size=32M",
                                 "--innodb-flush-log-at-trx-commit=0", "--innodb-doublewrite=0"],
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    return Database("mysql", port, "root", proc, tmp).wait_ready(started)


def run_django_fixture(engine: str, *args: str) -> None:
    """Django's own migrate and make_password, in a process of their own (Django's settings are global)."""
    result = subprocess.run([sys.executable, "-m", "tests.legacy.django_users", engine, *args], cwd=ROOT,
                            capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"the Django fixture failed:\n{result.stderr[-3000:]}")


class Relay:
    """A TCP relay in front of a real server: the source's connection goes through it, so a test can
    take the server away (``down``) or make it hang (``stall``) without touching the server itself."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self.stalled = False
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> "Relay":
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        if self.stalled:
            await asyncio.sleep(3600)  # accept, then never answer
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        self._writers.add(up_writer)
        for task in (self._pipe(reader, up_writer), self._pipe(up_reader, writer)):
            t = asyncio.ensure_future(task)
            self._pipes.add(t)
            t.add_done_callback(self._pipes.discard)

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def down(self) -> None:
        """Refuse new connections and cut the open ones."""
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.close()
        self._writers.clear()
        for task in list(self._pipes):
            task.cancel()

    async def up(self) -> None:
        self.stalled = False
        if self._server is None:
            await self.start()


@contextlib.contextmanager
def process(args: list[str], port: int, log: Path, **kwargs: Any) -> Iterator[subprocess.Popen[bytes]]:
    with open(log, "wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, **kwargs)
    try:
        wait_listening(port, proc)
    except RuntimeError:
        proc.kill()
        raise RuntimeError(f"{args[0]} did not start:\n{log.read_text(errors='replace')[-3000:]}") from None
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
