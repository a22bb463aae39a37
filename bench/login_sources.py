"""Login latency per identity source: ``.venv/bin/python -m bench.login_sources [--logins N] [--concurrency C]``.

Every source the test suite knows, on its real server (PostgreSQL and MariaDB
on the machine or throwaway ones, slapd and the Flask legacy app started here),
behind one in-process gateway each. For each source: N sequential logins of a
known user (right password), N with a wrong password, N of an unknown user
(these two should cost the same), then N logins at concurrency C. Prints a Markdown table and writes
``bench/results/login_sources.json``. Then the cost of each hash format alone
(``verify_password``), since that, not the lookup, is what a login costs with
production parameters.

Needs what ``make test`` installs (the test extra, slapd). Hashes are the test
fixtures' (Django's pbkdf2_sha256 at 20,000 rounds, bcrypt cost 10, Werkzeug's
scrypt default, argon2id defaults): the format table gives production costs.
"""
from __future__ import annotations

import argparse
import asyncio
import copy
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from gateway.app import create_app
from gateway.config import parse_config

RESULTS = Path(__file__).resolve().parent / "results" / "login_sources.json"


def _ms(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 1)


async def _serve(entry: dict[str, Any], tmp: Path) -> tuple[web.AppRunner, str]:
    from tests.sources.conftest import sources_config

    raw = sources_config("http://127.0.0.1:1", [entry], login_throttle={"enabled": False})
    app = create_app(parse_config(copy.deepcopy(raw), tmp))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}/auth/token"


async def _measure(url: str, logins: int, concurrency: int) -> dict[str, Any]:
    async with aiohttp.ClientSession() as session:
        async def one(user: str, password: str, expect: int) -> float:
            started = time.perf_counter()
            async with session.post(url, json={"username": user, "password": password}) as resp:
                await resp.read()
                assert resp.status == expect, (user, resp.status)
            return time.perf_counter() - started

        await one("alice", "alice-pw", 200)  # warm: pools open, the first hash is remembered
        known = [await one("alice", "alice-pw", 200) for _ in range(logins)]
        wrong = [await one("alice", "wrong-pw", 401) for _ in range(logins)]
        unknown = [await one("nobody-here", "nobody-pw", 401) for _ in range(logins)]
        gate = asyncio.Semaphore(concurrency)

        async def bounded() -> float:
            async with gate:
                return await one("alice", "alice-pw", 200)

        started = time.perf_counter()
        await asyncio.gather(*(bounded() for _ in range(logins)))
        rate = logins / (time.perf_counter() - started)
    return {"p50_ms": _ms(known, 0.5), "p95_ms": _ms(known, 0.95), "wrong_p50_ms": _ms(wrong, 0.5), "unknown_p50_ms": _ms(unknown, 0.5),
            "mean_ms": round(statistics.mean(known) * 1000, 1), "logins_per_s": round(rate, 1)}


def _hash_costs() -> dict[str, float]:
    """Milliseconds per verify, with the parameters each framework writes by default today."""
    import bcrypt
    import django
    from argon2 import PasswordHasher
    from django.conf import settings
    from werkzeug.security import generate_password_hash

    from gateway.sources.hashes import verify_password

    if not settings.configured:
        settings.configure(PASSWORD_HASHERS=["django.contrib.auth.hashers.PBKDF2PasswordHasher",
                                             "django.contrib.auth.hashers.Argon2PasswordHasher",
                                             "django.contrib.auth.hashers.BCryptSHA256PasswordHasher",
                                             "django.contrib.auth.hashers.ScryptPasswordHasher"])
        django.setup()
    from django.contrib.auth.hashers import make_password

    samples = {
        "argon2id (argon2-cffi default, the users file)": PasswordHasher().hash("pw"),
        "django pbkdf2_sha256 (1,000,000 rounds)": make_password("pw", hasher="pbkdf2_sha256"),
        "django argon2": make_password("pw", hasher="argon2"),
        "django bcrypt_sha256 (cost 12)": make_password("pw", hasher="bcrypt_sha256"),
        "django scrypt": make_password("pw", hasher="scrypt"),
        "werkzeug scrypt (default)": generate_password_hash("pw"),
        "bcrypt $2y$ (PHP default cost 10)": "$2y$" + bcrypt.hashpw(b"pw", bcrypt.gensalt(10)).decode()[4:],
    }
    costs = {}
    for name, encoded in samples.items():
        runs = []
        for _ in range(3):
            started = time.perf_counter()
            assert verify_password(encoded, "pw")
            runs.append(time.perf_counter() - started)
        costs[name] = round(min(runs) * 1000, 1)
    return costs


async def main(logins: int, concurrency: int) -> dict[str, Any]:
    from tests.ops.sources import conftest as fx
    from tests.support.sources import start_mariadb, start_postgres

    class Request:  # what make_case asks of pytest's request: the session's fixtures, made once here
        def __init__(self, made: dict[str, Any]) -> None:
            self.made = made

        def getfixturevalue(self, name: str) -> Any:
            return self.made[name]

    tmp = Path(tempfile.mkdtemp(prefix="bench-sources-"))
    postgres, mariadb = start_postgres(), start_mariadb()
    made: dict[str, Any] = {"postgres": postgres, "mariadb": mariadb}
    made["django_postgres"] = fx.django_database(postgres)
    made["django_mariadb"] = fx.django_database(mariadb)
    made["flask_postgres"] = fx.flask_table(postgres)
    made["php_mariadb"] = fx.php_table(mariadb)
    sqlite_path = tmp / "django.sqlite3"
    fx.run_django_fixture("sqlite3", str(sqlite_path))
    made["django_sqlite"] = sqlite_path
    slapd = fx.Slapd(tmp / "slapd", fx.free_port())
    (tmp / "slapd").mkdir()
    slapd.start()
    slapd.load()
    made["slapd"] = slapd
    app = fx.LegacyApp(tmp / "app.db", fx.free_port())
    fx.flask_app.make_users(str(app.db))
    import sys

    args = [sys.executable, "-m", "tests.legacy.flask_app", str(app.db), str(app.port), fx.SERVICE_KEY]
    results: dict[str, Any] = {}
    try:
        with fx.process(args, app.port, tmp / "flask.log"):
            made["legacy_app"] = app
            for name in fx.CASES:
                case = fx.make_case(name, Request(made), tmp)  # type: ignore[arg-type]
                runner, url = await _serve(case.entry, tmp)
                try:
                    results[name] = await _measure(url, logins, concurrency)
                finally:
                    await runner.cleanup()
                print(f"{name:20s} {results[name]}", flush=True)
    finally:
        slapd.stop()
        postgres.stop()
        mariadb.stop()
    return {"logins": logins, "concurrency": concurrency, "sources": results, "hash_ms": _hash_costs()}


def table(report: dict[str, Any]) -> str:
    lines = [f"Login latency per source ({report['logins']} logins each; throughput at concurrency {report['concurrency']})",
             "", "| source | p50 ms | p95 ms | wrong password p50 ms | unknown user p50 ms | logins/s |",
             "|---|---|---|---|---|---|"]
    for name, r in report["sources"].items():
        lines.append(f"| {name} | {r['p50_ms']} | {r['p95_ms']} | {r['wrong_p50_ms']} | {r['unknown_p50_ms']} "
                     f"| {r['logins_per_s']} |")
    lines += ["", "| hash format | ms per verify |", "|---|---|"]
    lines += [f"| {name} | {ms} |" for name, ms in report["hash_ms"].items()]
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--logins", type=int, default=50)
    parser.add_argument("--concurrency", type=int, default=8)
    options = parser.parse_args()
    report = asyncio.run(main(options.logins, options.concurrency))
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2))
    print(table(report))
