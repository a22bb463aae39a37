"""Real servers for the identity-source tests: PostgreSQL, MariaDB, slapd, a relay that can fail.

PostgreSQL (127.0.0.1:5432, trust, user postgres) and MariaDB (127.0.0.1:3306,
root without a password) are used when they run; otherwise the tests start
throwaway ones on free ports, as they do redis-server. Each test session makes
its own databases (``gw_test_<random>``) and drops them at the end. With
GATEWAY_TEST_OWN_DATABASES=1 the throwaway servers are used in any case.
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent
OWN_DATABASES = "GATEWAY_TEST_OWN_DATABASES"  # set: start throwaway servers even when the machine's are running


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
    """A database server the tests may create databases on."""

    engine: str  # postgresql | mysql
    port: int
    user: str
    proc: subprocess.Popen[bytes] | None = None
    made: list[str] = field(default_factory=list)
    own_dir: Path | None = None  # removed at stop

    def url(self, name: str) -> str:
        return f"{self.engine}://{self.user}@127.0.0.1:{self.port}/{name}"

    def connect(self, name: str | None = None) -> Any:
        if self.engine == "postgresql":
            import psycopg

            return psycopg.connect(host="127.0.0.1", port=self.port, user=self.user, dbname=name or "postgres", autocommit=True)
        import pymysql

        return pymysql.connect(host="127.0.0.1", port=self.port, user=self.user, password="", database=name, autocommit=True)

    def create(self) -> str:
        name = f"gw_test_{secrets.token_hex(4)}"
        with contextlib.closing(self.connect()) as conn, contextlib.closing(conn.cursor()) as cur:
            cur.execute(f"CREATE DATABASE {name}")  # a name the tests made, never input
        self.made.append(name)
        return name

    def run(self, name: str, *statements: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        rows: list[tuple[Any, ...]] = []
        with contextlib.closing(self.connect(name)) as conn, contextlib.closing(conn.cursor()) as cur:
            for statement in statements:
                cur.execute(statement, params or None)
                if cur.description:
                    rows = list(cur.fetchall())
        return rows

    def drop_all(self) -> None:
        with contextlib.closing(self.connect()) as conn, contextlib.closing(conn.cursor()) as cur:
            for name in self.made:
                force = " WITH (FORCE)" if self.engine == "postgresql" else ""
                cur.execute(f"DROP DATABASE IF EXISTS {name}{force}")
        self.made.clear()

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(30)
            self.proc = None
        if self.own_dir is not None:
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
        return {"user": entry.pw_uid, "group": entry.pw_gid}
    return {}


def start_postgres(tmp: Path) -> Database:
    """The machine's PostgreSQL, or a throwaway cluster (initdb, trust) on a free port."""
    if listening(5432) and not os.environ.get(OWN_DATABASES):
        return Database("postgresql", 5432, "postgres")
    initdb = _binary("initdb", ("/usr/lib/postgresql/*/bin/initdb",))
    if initdb is None:
        pytest.fail("PostgreSQL is neither running nor installed: run the README's test command (make test)")
    if os.getuid() == 0:  # PostgreSQL refuses to run as root: a directory an ordinary user can reach
        tmp = Path(tempfile.mkdtemp(prefix="gw-test-pg-"))
        os.chmod(tmp, 0o755)
    data, port = tmp / "pgdata", free_port()
    owner = _unprivileged(tmp)
    subprocess.run([initdb, "-D", str(data), "-U", "postgres", "-A", "trust"], check=True, capture_output=True, **owner)
    postgres = str(Path(initdb).with_name("postgres"))
    proc = subprocess.Popen([postgres, "-D", str(data), "-p", str(port), "-k", str(tmp), "-h", "127.0.0.1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **owner)
    wait_listening(port, proc)
    return Database("postgresql", port, "postgres", proc, own_dir=tmp)


def start_mariadb(tmp: Path) -> Database:
    """The machine's MariaDB, or a throwaway one (mariadb-install-db) on a free port."""
    if listening(3306) and not os.environ.get(OWN_DATABASES):
        return Database("mysql", 3306, "root")
    install, server = _binary("mariadb-install-db"), _binary("mariadbd", ("/usr/sbin/mariadbd",))
    if install is None or server is None:
        pytest.fail("MariaDB is neither running nor installed: run the README's test command (make test)")
    data, port = tmp / "mariadb", free_port()
    user = [f"--user={'root' if os.getuid() == 0 else os.environ.get('USER', 'nobody')}"]
    subprocess.run([install, "--no-defaults", f"--datadir={data}", "--auth-root-authentication-method=normal",
                    "--skip-test-db", *user], check=True, capture_output=True)
    proc = subprocess.Popen([server, "--no-defaults", f"--datadir={data}", f"--port={port}", "--bind-address=127.0.0.1",
                             f"--socket={tmp / 'mariadb.sock'}", *user],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_listening(port, proc)
    return Database("mysql", port, "root", proc)


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
