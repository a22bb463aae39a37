"""Identity sources against real servers: one ``SourceCase`` per deployment the gateway fronts.

Each case is a ``users:`` entry plus what a test needs to change the source
behind the gateway's back (roles, deactivation). Every user's password is
``<name>-pw``; alice is in editors and reporting, bob in editors, carol is
inactive. Databases, directories and apps are made once per session.
"""
from __future__ import annotations

import contextlib
import copy
import sqlite3
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterator

import bcrypt
import pytest
import yaml
from aiohttp.test_utils import TestClient

from gateway.app import create_app
from gateway.config import parse_config
from gateway.sources.users import hash_password
from tests.conftest import base_config
from tests.legacy import flask_app
from tests.legacy.slapd import GROUPS, PEOPLE, SERVICE, SERVICE_PW, SUFFIX, Slapd
from tests.support.sources import (
    ROOT,
    Database,
    free_port,
    process,
    run_django_fixture,
)

SERVICE_KEY = "legacy-service-key-0123456789"


def django_database(db: Database) -> str:
    """A new database with Django's auth tables and users (tests/legacy/django_users.py)."""
    name = db.create()
    run_django_fixture(db.engine, name, "127.0.0.1", str(db.port), db.user)
    return name


@pytest.fixture(scope="session")
def django_postgres(postgres: Database) -> str:
    return django_database(postgres)


@pytest.fixture(scope="session")
def django_mariadb(mariadb: Database) -> str:
    return django_database(mariadb)


@pytest.fixture(scope="session")
def django_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("django") / "db.sqlite3"
    run_django_fixture("sqlite3", str(path))
    return path


@pytest.fixture(scope="session")
def flask_postgres(postgres: Database) -> str:
    return flask_table(postgres)


def flask_table(postgres: Database) -> str:
    """A Flask app's users table (Werkzeug hashes), in PostgreSQL: the generic preset's shape."""
    name = postgres.create()
    postgres.run(name, flask_app.SCHEMA)
    with contextlib.closing(postgres.connect(name)) as conn, contextlib.closing(conn.cursor()) as cur:
        cur.executemany("INSERT INTO users VALUES (%s, %s, %s, %s, %s, %s)", flask_app.user_rows())
    return name


PHP_SCHEMA = (
    "CREATE TABLE members (id INT AUTO_INCREMENT PRIMARY KEY, login VARCHAR(64) UNIQUE NOT NULL, email VARCHAR(190),"
    " password VARCHAR(255) NOT NULL, status ENUM('active','banned') NOT NULL, role VARCHAR(190) NOT NULL DEFAULT '')"
)
PHP_QUERY = (
    "SELECT login, password AS password_hash, status = 'active' AS active, email, role "
    "FROM members WHERE login = :login"
)


def php_hash(password: str) -> str:
    """What PHP's password_hash(PASSWORD_BCRYPT) stores: $2y$, cost 10 (PHP reads 72 bytes of a password)."""
    return "$2y$" + bcrypt.hashpw(password.encode()[:72], bcrypt.gensalt(10)).decode()[4:]


@pytest.fixture(scope="session")
def php_mariadb(mariadb: Database) -> str:
    return php_table(mariadb)


def php_table(mariadb: Database) -> str:
    """A PHP application's members table in MariaDB, bcrypt $2y$ hashes."""
    name = mariadb.create()
    mariadb.run(name, PHP_SCHEMA)
    rows = [("alice", "active", "editors,reporting"), ("bob", "active", "editors"), ("carol", "banned", "editors")]
    with contextlib.closing(mariadb.connect(name)) as conn, contextlib.closing(conn.cursor()) as cur:
        cur.executemany("INSERT INTO members (login, email, password, status, role) VALUES (%s, %s, %s, %s, %s)",
                        [(u, f"{u}@example.com", php_hash(f"{u}-pw"), s, r) for u, s, r in rows])
    return name


@pytest.fixture(scope="session")
def slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slapd]:
    server = Slapd(tmp_path_factory.mktemp("slapd"), free_port())
    server.start()
    server.load()
    yield server
    server.stop()


@dataclass
class LegacyApp:
    db: Path
    port: int
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def set(self, statement: str, *params: Any) -> None:
        with sqlite3.connect(self.db) as conn:
            conn.execute(statement, params)


@pytest.fixture(scope="session")
def legacy_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LegacyApp]:
    """The Flask legacy app, a real server in its own process."""
    tmp = tmp_path_factory.mktemp("flask")
    app = LegacyApp(tmp / "app.db", free_port())
    flask_app.make_users(str(app.db))
    args = [sys.executable, "-m", "tests.legacy.flask_app", str(app.db), str(app.port), SERVICE_KEY]
    with process(args, app.port, tmp / "flask.log") as proc:
        app.proc = proc
        yield app


def file_users(tmp: Path) -> Path:
    claims = {"alice": ["editors", "reporting"], "bob": ["editors"], "carol": ["editors"]}
    users = {
        name: {"password_hash": hash_password(f"{name}-pw"), "disabled": name == "carol",
               "claims": {"email": f"{name}@example.com", "roles": roles}}
        for name, roles in claims.items()
    }
    path = tmp / "users.yaml"
    path.write_text(yaml.safe_dump({"users": users}))
    return path


# -- cases ---------------------------------------------------------------------------------

@dataclass
class SourceCase:
    name: str
    entry: dict[str, Any]  # one item of users:
    set_roles: Callable[[str, list[str]], None] | None = None  # None: the source changes on reload only
    deactivate: Callable[[str, bool], None] | None = None
    expected_roles: set[str] = field(default_factory=lambda: {"editors", "reporting"})


def _django_case(name: str, db: Database | None, dbname: str, url: str, placeholder: str = "%s") -> SourceCase:
    def run(*statements: str, params: tuple[Any, ...] = ()) -> None:
        statements = tuple(s.replace("%s", placeholder) for s in statements)
        if db is None:
            with sqlite3.connect(dbname) as conn:
                for s in statements:
                    conn.execute(s, params)
        else:
            db.run(dbname, *statements, params=params)

    def set_roles(user: str, roles: list[str]) -> None:
        run("DELETE FROM auth_user_groups WHERE user_id = (SELECT id FROM auth_user WHERE username = %s)", params=(user,))
        for role in roles:
            run("INSERT INTO auth_group (name) SELECT %s WHERE NOT EXISTS (SELECT 1 FROM auth_group WHERE name = %s)",
                params=(role, role))
            run("INSERT INTO auth_user_groups (user_id, group_id) SELECT u.id, g.id FROM auth_user u, auth_group g "
                "WHERE u.username = %s AND g.name = %s", params=(user, role))

    def deactivate(user: str, inactive: bool) -> None:
        run("UPDATE auth_user SET is_active = %s WHERE username = %s", params=(not inactive, user))

    return SourceCase(name, {"sql": {"url": url, "preset": "django", "timeout": "5s"}}, set_roles, deactivate,
                      {"editors", "reporting", "staff"})


def _table_case(name: str, db: Database, dbname: str, entry: dict[str, Any], table: str, login: str,
                roles: str, active: str, on: Any, off: Any) -> SourceCase:
    def set_roles(user: str, new: list[str]) -> None:
        db.run(dbname, f"UPDATE {table} SET {roles} = %s WHERE {login} = %s", params=(",".join(new), user))

    def deactivate(user: str, inactive: bool) -> None:
        db.run(dbname, f"UPDATE {table} SET {active} = %s WHERE {login} = %s", params=(off if inactive else on, user))

    return SourceCase(name, entry, set_roles, deactivate)


CASES = ["file", "django-postgresql", "django-mariadb", "django-sqlite", "flask-postgresql", "php-mariadb", "ldap", "http"]


def make_case(name: str, request: pytest.FixtureRequest, tmp: Path) -> SourceCase:
    get = request.getfixturevalue
    if name == "file":
        return SourceCase(name, {"file": str(file_users(tmp))})
    if name == "django-postgresql":
        db, dbname = get("postgres"), get("django_postgres")
        return _django_case(name, db, dbname, db.url(dbname))
    if name == "django-mariadb":
        db, dbname = get("mariadb"), get("django_mariadb")
        return _django_case(name, db, dbname, db.url(dbname))
    if name == "django-sqlite":
        path = get("django_sqlite")
        return _django_case(name, None, str(path), f"sqlite:///{path}", "?")
    if name == "flask-postgresql":
        db, dbname = get("postgres"), get("flask_postgres")
        entry = {"sql": {"url": db.url(dbname), "preset": "generic"}}
        return _table_case(name, db, dbname, entry, "users", "username", "roles", "active", True, False)
    if name == "php-mariadb":
        db, dbname = get("mariadb"), get("php_mariadb")
        entry = {"sql": {"url": db.url(dbname), "query": PHP_QUERY, "claims": {"email": "email", "roles": "role"}}}
        return _table_case(name, db, dbname, entry, "members", "login", "role", "status", "active", "banned")
    if name == "ldap":
        server: Slapd = get("slapd")
        entry = {"ldap": {
            "url": server.url, "bind_dn": SERVICE, "bind_password": SERVICE_PW, "user_base": PEOPLE,
            "user_filter": "(&(objectClass=inetOrgPerson)(uid={login})(!(employeeType=disabled)))",
            "group_base": GROUPS, "attributes": {"email": "mail", "name": "cn"},
        }}
        return SourceCase(name, entry, server.set_groups, server.set_disabled)
    if name == "http":
        app: LegacyApp = get("legacy_app")
        entry = {"http": {
            "url": f"{app.url}/api/login", "user_url": f"{app.url}/api/users/{{login}}",
            "headers": {"X-Service-Key": SERVICE_KEY}, "subject": "user.username",
            "claims": {"email": "user.email", "roles": "user.groups", "user_id": "user.id"},
        }}

        def set_roles(user: str, roles: list[str]) -> None:
            app.set("UPDATE users SET roles = ? WHERE username = ?", ",".join(roles), user)

        def deactivate(user: str, inactive: bool) -> None:
            app.set("UPDATE users SET active = ? WHERE username = ?", not inactive, user)

        return SourceCase(name, entry, set_roles, deactivate)
    raise AssertionError(name)


@pytest.fixture(params=CASES)
def case(request: pytest.FixtureRequest, tmp_path: Path) -> SourceCase:
    return make_case(request.param, request, tmp_path)


@pytest.fixture(params=[c for c in CASES if c != "file"])
def live_case(request: pytest.FixtureRequest, tmp_path: Path) -> SourceCase:
    """The sources whose data changes under a running gateway (a users file changes on reload: tests/ops/test_reload.py)."""
    return make_case(request.param, request, tmp_path)


def sources_config(upstream: str, entries: list[dict[str, Any]], **overrides: Any) -> dict[str, Any]:
    """tests.conftest.base_config with ``users:`` instead of the users file."""
    raw = base_config(upstream, Path("unused.yaml"), **overrides)
    del raw["users_file"]
    raw["users"] = entries
    return raw


@pytest.fixture
async def source_gateway(aiohttp_client: Any, upstream: str, tmp_path: Path) -> Callable[..., Awaitable[TestClient]]:
    """A running gateway on the given ``users:`` entries (plus base_config overrides)."""

    async def make(*entries: dict[str, Any], **overrides: Any) -> TestClient:
        config = parse_config(copy.deepcopy(sources_config(upstream, list(entries), **overrides)), tmp_path)
        return await aiohttp_client(create_app(config))

    return make


__all__ = ["CASES", "LegacyApp", "SourceCase", "ROOT", "SUFFIX", "make_case", "sources_config"]
