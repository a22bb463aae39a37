"""The sql source: every hash format Django, Werkzeug and PHP write; outages; rehash; the chain's order."""
from __future__ import annotations

import asyncio
import logging
import random
import statistics
import time

import bcrypt
import jwt
import pytest

from tests.conftest import bearer
from tests.legacy.django_users import HASHERS
from tests.ops.sources.conftest import PHP_QUERY, php_hash
from tests.support.sources import Database, Relay

ACCEPTED = [h for h in HASHERS if h != "md5"]


def sub_of(token: str) -> str:
    return jwt.decode(token, options={"verify_signature": False})["sub"]


def django(db: Database, name: str, **extra: object) -> dict:
    # 10 s, not the default 3 s: a login with a rehash takes seconds on 2 loaded cores running tests in parallel;
    # the tests of timeouts set their own
    return {"sql": {"url": db.url(name), "preset": "django", "timeout": "10s", **extra}}


async def login(gw, user: str, password: str | None = None):
    return await gw.post("/auth/token", json={"username": user, "password": password or f"{user}-pw"})


@pytest.mark.parametrize("hasher", ACCEPTED)
async def test_every_django_hasher_logs_in(source_gateway, postgres, django_postgres, hasher):
    gw = await source_gateway(django(postgres, django_postgres))
    user = f"hash-{hasher}"
    resp = await login(gw, user)
    assert resp.status == 200, await resp.text()
    assert sub_of((await resp.json())["access"]) == user
    assert (await login(gw, user, "not-the-password")).status == 401


@pytest.mark.parametrize("user", ["hash-md5", "hash-unusable"])
async def test_unsalted_and_unusable_hashes_never_match_and_warn_once(source_gateway, postgres, django_postgres, user, caplog):
    from gateway.sources import hashes

    hashes._warned.clear()
    gw = await source_gateway(django(postgres, django_postgres))
    with caplog.at_level(logging.WARNING, logger="gateway.sources"):
        for _ in range(3):
            assert (await login(gw, user)).status == 401
    warnings = [r.getMessage() for r in caplog.records if "is not accepted" in r.getMessage()]
    assert len(warnings) == 1 and ("'md5$'" in warnings[0] or "'django-unusable (!)'" in warnings[0])
    [(stored,)] = postgres.run(django_postgres, "SELECT password FROM auth_user WHERE username = %s", params=(user,))
    assert f"{user}-pw" not in caplog.text and stored not in caplog.text and stored[-12:] not in caplog.text


@pytest.mark.parametrize("user", ["hash-werkzeug-scrypt", "hash-werkzeug-pbkdf2", "alice", "bob"])
async def test_werkzeug_hashes_of_a_flask_table(source_gateway, postgres, flask_postgres, user):
    gw = await source_gateway({"sql": {"url": postgres.url(flask_postgres), "preset": "generic"}})
    assert (await login(gw, user)).status == 200
    assert (await login(gw, user, "wrong")).status == 401


async def test_php_bcrypt_2y_and_long_passwords(source_gateway, mariadb, php_mariadb):

    long_pw = "p" * 100  # PHP's bcrypt reads 72 bytes of it, and so does the gateway
    mariadb.run(php_mariadb, "INSERT INTO members (login, email, password, status) VALUES (%s, %s, %s, 'active')",
                params=("dave", "dave@example.com", php_hash(long_pw)))
    gw = await source_gateway({"sql": {"url": mariadb.url(php_mariadb), "query": PHP_QUERY}})
    assert (await login(gw, "dave", long_pw)).status == 200
    assert (await login(gw, "dave", long_pw[:72] + "different tail")).status == 200
    assert (await login(gw, "dave", long_pw[:71])).status == 401


async def test_rehash_on_login_writes_argon2id_that_django_still_reads(source_gateway, postgres, django_postgres):
    user = "rehash-me"
    postgres.run(django_postgres, "INSERT INTO auth_user (username, password, is_active, is_staff, is_superuser, first_name,"
                 " last_name, email, date_joined) SELECT %s, password, TRUE, FALSE, FALSE, '', '', '', now() FROM auth_user"
                 " WHERE username = 'hash-pbkdf2_sha1'", params=(user,))
    gw = await source_gateway(django(postgres, django_postgres, rehash_on_login=True))
    assert (await login(gw, user, "hash-pbkdf2_sha1-pw")).status == 200
    [(stored,)] = postgres.run(django_postgres, "SELECT password FROM auth_user WHERE username = %s", params=(user,))
    assert stored.startswith("argon2$argon2id$")  # Django's Argon2PasswordHasher format
    assert (await login(gw, user, "hash-pbkdf2_sha1-pw")).status == 200
    assert (await login(gw, user, "wrong")).status == 401


async def test_rehash_is_off_by_default(source_gateway, postgres, django_postgres):
    gw = await source_gateway(django(postgres, django_postgres))
    before = postgres.run(django_postgres, "SELECT password FROM auth_user WHERE username = 'hash-bcrypt'")
    assert (await login(gw, "hash-bcrypt")).status == 200
    assert postgres.run(django_postgres, "SELECT password FROM auth_user WHERE username = 'hash-bcrypt'") == before


async def test_source_down_mid_test_503_and_proxied_traffic_is_fine(source_gateway, postgres, django_postgres):
    relay = await Relay(postgres.port).start()
    url = f"postgresql://postgres@127.0.0.1:{relay.port}/{django_postgres}"
    gw = await source_gateway({"sql": {"url": url, "preset": "django", "timeout": "1s"}})
    pair = await (await login(gw, "alice")).json()
    await relay.down()
    resp = await login(gw, "alice")
    assert resp.status == 503 and (await resp.json())["code"] == "identity_unavailable"
    assert resp.headers["Retry-After"]
    resp = await gw.post("/auth/token/refresh", json={"refresh": pair["refresh"]})
    assert resp.status == 503 and (await resp.json())["code"] == "identity_unavailable"
    assert (await gw.get("/api/x", headers=bearer(pair["access"]))).status == 200
    ready = await (await gw.get("/readyz")).json()
    assert ready["status"] == "degraded" and ready["sources"] == {"sql": "down"}
    await relay.up()
    assert (await login(gw, "alice")).status == 200
    resp = await gw.post("/auth/token/refresh", json={"refresh": pair["refresh"]})  # not spent by the 503
    assert resp.status == 200
    assert (await (await gw.get("/readyz")).json())["sources"] == {"sql": "up"}


async def test_a_slow_source_answers_503_within_its_timeout(source_gateway, postgres, django_postgres):
    relay = await Relay(postgres.port).start()
    relay.stalled = True
    url = f"postgresql://postgres@127.0.0.1:{relay.port}/{django_postgres}"
    gw = await source_gateway({"sql": {"url": url, "preset": "django", "timeout": "500ms"}})
    started = time.monotonic()
    resp = await login(gw, "alice")
    assert resp.status == 503 and time.monotonic() - started < 2.5
    await relay.down()


async def test_an_outage_does_not_count_against_the_login_throttle(source_gateway, postgres, django_postgres):
    relay = await Relay(postgres.port).start()
    url = f"postgresql://postgres@127.0.0.1:{relay.port}/{django_postgres}"
    gw = await source_gateway({"sql": {"url": url, "preset": "django", "timeout": "1s"}}, login_throttle={"per_user": 2})
    await relay.down()
    for _ in range(4):
        assert (await login(gw, "alice")).status == 503
    await relay.up()
    assert (await login(gw, "alice")).status == 200


async def test_the_first_source_that_knows_the_login_decides(source_gateway, postgres, django_postgres, mariadb, php_mariadb):
    php = {"sql": {"url": mariadb.url(php_mariadb), "query": PHP_QUERY}}
    gw = await source_gateway(django(postgres, django_postgres), php)
    assert (await login(gw, "hash-bcrypt")).status == 200  # only in Django's table
    mariadb.run(php_mariadb, "INSERT INTO members (login, email, password, status) VALUES ('only-php', 'o@x', %s, 'active')",
                params=(php_hash("only-php-pw"),))
    assert (await login(gw, "only-php")).status == 200  # Django's table does not know it: the PHP table decides
    # alice is in both; Django's decides, so the PHP table's password for her is not tried
    mariadb.run(php_mariadb, "UPDATE members SET password = %s WHERE login = 'alice'",
                params=(php_hash("php-only-password"),))
    assert (await login(gw, "alice", "php-only-password")).status == 401
    assert (await login(gw, "alice")).status == 200


async def test_an_earlier_source_down_fails_the_login_even_if_a_later_one_knows_it(
    source_gateway, postgres, django_postgres, mariadb, php_mariadb
):
    relay = await Relay(postgres.port).start()
    first = {"sql": {"url": f"postgresql://postgres@127.0.0.1:{relay.port}/{django_postgres}", "preset": "django",
                     "timeout": "1s"}}
    gw = await source_gateway(first, {"sql": {"url": mariadb.url(php_mariadb), "query": PHP_QUERY}})
    await relay.down()
    assert (await login(gw, "bob")).status == 503  # Django's table might own bob: the PHP table must not decide


async def test_login_by_email_with_the_django_preset(source_gateway, postgres, django_postgres):
    gw = await source_gateway(django(postgres, django_postgres),
                              compat={"profiles": [{"profile": "custom", "paths": {"login": "/api/login"},
                                                    "login_claim": "email"}]})
    resp = await gw.post("/api/login", json={"username": "bob@example.com", "password": "bob-pw"})
    assert resp.status == 200 and sub_of((await resp.json())["access"]) == "bob"


# One wrong login per kind of account, interleaved in a new order each round, medians compared with a wide
# margin: a noisy 2-core machine moves single timings, not the medians of five (measured: before the decoy the
# fast kinds took 1-15 ms against 200-500 ms for argon2 and bcrypt; after, all within 1.5x of each other).
REFUSED_KINDS = {
    "unknown": "nobody-at-all",
    "unusable (!)": "hash-unusable",  # Django's set_unusable_password(): every social-only account
    "md5 (never accepted)": "hash-md5",
    "pbkdf2 20k (fast)": "alice",
    "bcrypt 12": "hash-bcrypt",
    "argon2 (Django's)": "hash-argon2",
}
NO_LIMITS = {"per_user": 1000, "per_ip": 1000, "rate_per_ip": 1000}


async def refusal_medians(gw, kinds: dict[str, str], rounds: int) -> dict[str, float]:
    timings: dict[str, list[float]] = {kind: [] for kind in kinds}
    order = list(kinds)
    for round_ in range(rounds):
        random.Random(round_).shuffle(order)
        for kind in order:
            started = time.perf_counter()
            resp = await login(gw, kinds[kind], "not-the-password")
            timings[kind].append(time.perf_counter() - started)
            assert resp.status == 401, (kind, await resp.text())
    return {kind: statistics.median(t) for kind, t in timings.items()}


def costs_alike(medians: dict[str, float]) -> bool:
    return min(medians.values()) >= 0.5 * max(medians.values())


@pytest.mark.serial  # compares login timings: alone on the machine
async def test_every_refused_login_costs_the_same(source_gateway, postgres, django_postgres):
    """Unknown, unusable, never-accepted, fast and costly hashes: one price, the decoy's (costliest_hash: bcrypt 12)."""
    costliest = "bcrypt_sha256$" + bcrypt.hashpw(b"any throwaway password", bcrypt.gensalt(12)).decode()
    gw = await source_gateway(django(postgres, django_postgres, costliest_hash=costliest), login_throttle=NO_LIMITS)
    medians = await refusal_medians(gw, REFUSED_KINDS, rounds=5)
    assert costs_alike(medians), {kind: f"{m * 1000:.0f} ms" for kind, m in medians.items()}


@pytest.mark.serial  # compares login timings: alone on the machine
async def test_a_costlier_hash_than_the_decoy_becomes_the_decoy(source_gateway, postgres, django_postgres, caplog):
    """Without costliest_hash the decoy is the gateway's argon2id; the first bcrypt-12 check raises it, and says so."""
    gw = await source_gateway(django(postgres, django_postgres), login_throttle=NO_LIMITS)
    with caplog.at_level(logging.WARNING, logger="gateway.sources"):
        assert (await login(gw, "hash-bcrypt", "not-the-password")).status == 401
    raised = [r.getMessage() for r in caplog.records if "costlier than the login decoy" in r.getMessage()]
    assert len(raised) == 1 and "$2b$12" in raised[0] and "not-the-password" not in raised[0]
    kinds = {k: REFUSED_KINDS[k] for k in ("unknown", "unusable (!)", "md5 (never accepted)", "bcrypt 12")}
    medians = await refusal_medians(gw, kinds, rounds=3)
    assert costs_alike(medians), {kind: f"{m * 1000:.0f} ms" for kind, m in medians.items()}


def test_costliest_hash_must_be_a_format_the_gateway_checks(postgres, django_postgres, tmp_path):
    from gateway.config import ConfigError, parse_config
    from gateway.sources.registry import build_chain
    from tests.ops.sources.conftest import sources_config

    config = parse_config(sources_config("http://127.0.0.1:1", [django(postgres, django_postgres,
                                                                        costliest_hash="md5$salt$abc")]), tmp_path)
    with pytest.raises(ConfigError) as info:
        build_chain(config)
    assert "costliest_hash: not a hash format the gateway checks" in info.value.problems[0]


async def test_metrics_count_lookups_per_source(source_gateway, postgres, django_postgres):
    gw = await source_gateway(django(postgres, django_postgres))
    await login(gw, "alice")
    await login(gw, "nobody", "x")
    text = await (await gw.get("/metrics")).text()
    assert 'gateway_user_source_calls_total{operation="find",result="found",source="sql"} 1.0' in text
    assert 'gateway_user_source_calls_total{operation="find",result="unknown",source="sql"} 1.0' in text
    assert 'gateway_user_source_duration_seconds_count{operation="check",source="sql"} 1.0' in text


async def test_no_password_or_hash_reaches_the_log(source_gateway, postgres, django_postgres, caplog):
    relay = await Relay(postgres.port).start()
    url = f"postgresql://postgres@127.0.0.1:{relay.port}/{django_postgres}"
    gw = await source_gateway({"sql": {"url": url, "preset": "django", "timeout": "1s"}})
    with caplog.at_level(logging.DEBUG):
        await login(gw, "alice", "secret-attempt-1")
        await relay.down()
        await login(gw, "alice", "secret-attempt-2")
        await asyncio.sleep(0)
    assert "secret-attempt" not in caplog.text and "pbkdf2_sha256$" not in caplog.text
    assert "user source sql" in caplog.text  # the outage itself is logged


async def test_the_positive_cache_is_opt_in_and_short(source_gateway, postgres, django_postgres):
    """cache: 1m lets refreshes skip the database for a minute: a deactivation then takes up to that long."""
    gw = await source_gateway(django(postgres, django_postgres, cache="1m"))
    pair = await (await login(gw, "bob")).json()
    postgres.run(django_postgres, "UPDATE auth_user SET is_active = FALSE WHERE username = 'bob'")
    try:
        resp = await gw.post("/auth/token/refresh", json={"refresh": pair["refresh"]})
        assert resp.status == 200  # answered from the cache filled at login
        assert (await login(gw, "bob")).status == 401  # logins always ask the source
    finally:
        postgres.run(django_postgres, "UPDATE auth_user SET is_active = TRUE WHERE username = 'bob'")


def test_the_cache_is_bounded_and_expires():
    from gateway.sources.base import TtlCache

    cache: TtlCache[int] = TtlCache(ttl=60, max_entries=3)
    for i in range(5):
        cache.put(f"k{i}", i)
    assert [cache.get(f"k{i}") for i in range(5)] == [None, None, 2, 3, 4]
    expired: TtlCache[int] = TtlCache(ttl=-1)
    expired.put("k", 1)
    assert expired.get("k") is None


async def test_case_and_space_variants_share_the_login_throttle(source_gateway, mariadb, php_mariadb):
    """MariaDB's collation takes ALICE and "alice " as alice: guessing with them counts against alice."""
    gw = await source_gateway({"sql": {"url": mariadb.url(php_mariadb), "query": PHP_QUERY}},
                              login_throttle={"per_user": 2})
    for variant in ("ALICE", "alice "):
        assert (await login(gw, variant, "guess")).status == 401
    assert (await login(gw, "alice")).status == 429


async def test_an_inactive_user_is_refused_by_the_source_that_knows_it(source_gateway, postgres, django_postgres, tmp_path):
    """carol is disabled in the file and inactive in Django; bob is active in both. A later source never
    overrules an earlier one's "inactive", at login or at refresh."""
    from tests.ops.sources.conftest import file_users

    file_entry = {"file": str(file_users(tmp_path))}
    postgres.run(django_postgres, "UPDATE auth_user SET is_active = TRUE WHERE username = 'carol'")
    try:
        gw = await source_gateway(file_entry, django(postgres, django_postgres))
        assert (await login(gw, "carol")).status == 401  # the file knows carol, disabled: Django is not asked
    finally:
        postgres.run(django_postgres, "UPDATE auth_user SET is_active = FALSE WHERE username = 'carol'")
    gw = await source_gateway(django(postgres, django_postgres), file_entry)
    pair = await (await login(gw, "bob")).json()
    postgres.run(django_postgres, "UPDATE auth_user SET is_active = FALSE WHERE username = 'bob'")
    try:
        assert (await login(gw, "bob")).status == 401  # Django knows bob, inactive: the file's bob is not tried
        assert (await gw.post("/auth/token/refresh", json={"refresh": pair["refresh"]})).status == 401
    finally:
        postgres.run(django_postgres, "UPDATE auth_user SET is_active = TRUE WHERE username = 'bob'")


async def test_an_outage_writes_a_bounded_number_of_lines_that_count_the_failures(source_gateway, caplog):
    """PostgreSQL on a closed port: many logins, two warnings each without a limit; now the first, then the count."""
    from gateway.observe.logs import REPEAT_INTERVAL
    from tests.support.sources import free_port

    url = f"postgresql://postgres@127.0.0.1:{free_port()}/nothing"  # nothing listens there
    gw = await source_gateway({"sql": {"url": url, "preset": "django", "timeout": "1s"}})
    logins = attempts = 0
    caplog.set_level(logging.WARNING, logger="gateway")
    started = time.monotonic()
    while time.monotonic() - started < 3.0 and logins < 2000:
        answers = await asyncio.gather(*(login(gw, f"user{attempts + i}") for i in range(10)))
        statuses = [resp.status for resp in answers]
        assert set(statuses) <= {503, 429}  # 429: concurrent checks from one address are bounded
        attempts += 10
        logins += statuses.count(503)  # each one reached the source
    assert logins >= 40, "too few logins to tell a flood"
    during = [r.getMessage() for r in caplog.records if r.name.startswith("gateway") and r.levelno >= logging.WARNING]
    assert len(during) <= 2, during  # the first occurrence of each warning (the source's, the chain's)
    await asyncio.sleep(REPEAT_INTERVAL - (time.monotonic() - started) + 1.0)
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("gateway") and r.levelno >= logging.WARNING]
    assert len(lines) <= 4, lines  # ...then one line per warning with the count of the held-back ones
    counts = [int(line.split("(repeated ")[1].split(" ")[0]) for line in lines if "(repeated " in line]
    assert counts and all(count == logins - 1 for count in counts), (logins, lines)


async def test_readiness_asks_what_a_login_needs_so_a_locked_table_is_degraded(source_gateway, postgres, django_postgres):
    """`SELECT 1` answers while auth_user is locked, but no login can: /readyz runs the user query, bounded."""
    gw = await source_gateway({"sql": {"url": postgres.url(django_postgres), "preset": "django", "timeout": "1s"}})
    ready = await (await gw.get("/readyz")).json()
    assert ready["status"] == "ready" and ready["sources"] == {"sql": "up"}
    locker = postgres.connect(django_postgres)
    try:
        with locker.transaction():
            locker.execute("LOCK TABLE auth_user IN ACCESS EXCLUSIVE MODE")
            started = time.monotonic()
            resp = await asyncio.wait_for(gw.get("/readyz"), 10)
            elapsed = time.monotonic() - started
            ready = await resp.json()
            assert resp.status == 200, ready  # user sources never take an instance out of the load balancer
            assert ready["status"] == "degraded" and ready["code"] == "identity_unavailable"
            assert ready["sources"] == {"sql": "down"}
            assert elapsed < 1.0 + 1.5, elapsed  # within the source's timeout (and readiness's own 2 s bound)
    finally:
        locker.close()
    ready = await (await gw.get("/readyz")).json()
    assert ready["status"] == "ready" and ready["sources"] == {"sql": "up"}
