"""The credentials store on the three databases it supports: SQLite (a file), PostgreSQL and MariaDB, each a real
server of the test session's own (tests/support/sources.py). Schema migration, sealing at rest, key rotation,
single use of recovery codes under concurrency."""
from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, AsyncIterator

import pytest

from gateway.config.factors import CredentialStoreSettings, SealingKey
from gateway.factors.migrations import LATEST, SchemaTooNew, schema_version
from gateway.factors.sealing import Sealer, SealError
from gateway.factors.store import Authenticator, CredentialStore
from tests.support.sources import Database

pytestmark = pytest.mark.slow

KEY_A = SealingKey(id="a", secret="sealing-key-a-0123456789-0123456789")  # type: ignore[arg-type]
KEY_B = SealingKey(id="b", secret="sealing-key-b-0123456789-0123456789")  # type: ignore[arg-type]


@pytest.fixture(params=["sqlite", "postgresql", "mariadb"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state' / 'credentials.db'}"
    server: Database = request.getfixturevalue("postgres" if request.param == "postgresql" else "mariadb")
    return server.url(server.create())


def _store(url: str, *keys: SealingKey) -> CredentialStore:
    return CredentialStore.from_config(CredentialStoreSettings(url=url, keys=keys or (KEY_A,)))


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[CredentialStore]:
    instance = _store(database_url)
    await instance.start()
    yield instance
    await instance.close()


async def test_schema_is_created_once_and_started_again_idempotently(database_url: str) -> None:
    first, second = _store(database_url), _store(database_url)
    try:
        versions = await asyncio.gather(first.start(), second.start())  # two instances starting together
        assert versions == [LATEST, LATEST]
        assert await first.start() == LATEST
        rows = await first.db.fetch("SELECT version FROM gw_schema_version ORDER BY version")
        assert [r["version"] for r in rows] == list(range(1, LATEST + 1))
    finally:
        await first.close()
        await second.close()


async def test_a_newer_schema_is_refused(store: CredentialStore) -> None:
    await store.db.execute("INSERT INTO gw_schema_version (version, applied_at) VALUES (:v, 0)", v=LATEST + 1)
    assert await schema_version(store.db) == LATEST + 1
    with pytest.raises(SchemaTooNew):
        await store.start()


async def test_totp_secret_is_sealed_at_rest_and_survives_a_restart(database_url: str) -> None:
    store = _store(database_url)
    await store.start()
    await store.put_pending_totp("alice", "JBSWY3DPEHPK3PXP")
    assert await store.methods("alice") == []  # pending is no method yet
    await store.activate_totp("alice", "JBSWY3DPEHPK3PXP")
    raw = await store.db.fetch("SELECT kind, secret FROM gw_credentials WHERE subject = :s", s="alice")
    assert [r["kind"] for r in raw] == ["totp"]
    assert "JBSWY3DPEHPK3PXP" not in raw[0]["secret"] and raw[0]["secret"].startswith("v1.a.")
    await store.close()
    again = _store(database_url)  # a restart, or another instance
    try:
        assert await again.methods("alice") == ["totp"]
        assert await again.totp_secret("alice") == "JBSWY3DPEHPK3PXP"
        assert await again.totp_secret("bob") is None
    finally:
        await again.close()


async def test_a_row_copied_to_another_user_does_not_open(store: CredentialStore) -> None:
    await store.activate_totp("alice", "JBSWY3DPEHPK3PXP")
    sealed = (await store.db.fetch("SELECT secret FROM gw_credentials WHERE subject = :s", s="alice"))[0]["secret"]
    await store.db.execute("INSERT INTO gw_credentials (subject, kind, name, secret, created_at) VALUES ('mallory', 'totp',"
                           " 'default', :secret, 0)", secret=sealed)
    with pytest.raises(SealError):
        await store.totp_secret("mallory")


async def test_key_rotation_reads_old_rows_and_reseals_them(database_url: str) -> None:
    old = _store(database_url, KEY_A)
    await old.start()
    await old.activate_totp("alice", "JBSWY3DPEHPK3PXP")
    await old.close()
    rotated = _store(database_url, KEY_B, KEY_A)  # the new key first, the old one still opens
    try:
        assert await rotated.totp_secret("alice") == "JBSWY3DPEHPK3PXP"
        raw = await rotated.db.fetch("SELECT secret FROM gw_credentials WHERE subject = :s", s="alice")
        assert raw[0]["secret"].startswith("v1.b.")  # re-sealed under the active key on read
    finally:
        await rotated.close()
    only_new = _store(database_url, KEY_B)  # the old key retired: the row still opens
    try:
        assert await only_new.totp_secret("alice") == "JBSWY3DPEHPK3PXP"
    finally:
        await only_new.close()
    only_old = _store(database_url, KEY_A)  # a gateway without the new key cannot open it
    try:
        with pytest.raises(SealError):
            await only_old.totp_secret("alice")
    finally:
        await only_old.close()


async def test_recovery_code_is_spent_by_exactly_one_of_concurrent_callers(database_url: str) -> None:
    one, two = _store(database_url), _store(database_url)
    await one.start()
    try:
        await one.replace_recovery("alice", [("01", "hash-1"), ("02", "hash-2")])
        assert await one.methods("alice") == ["recovery"]
        results = await asyncio.gather(*(s.spend_recovery("alice", "01") for s in (one, two, one, two)))
        assert sorted(results) == [False, False, False, True]
        assert await two.recovery_hashes("alice") == [("02", "hash-2")]
        await one.replace_recovery("alice", [("01", "new")])  # a new set replaces every earlier code
        assert await one.recovery_hashes("alice") == [("01", "new")]
        await one.remove_all("alice")
        assert await one.methods("alice") == []
    finally:
        await one.close()
        await two.close()


def test_sealer_refuses_tampering_and_unknown_keys() -> None:
    sealer = Sealer((KEY_A,))
    sealed = sealer.seal(b"secret", "alice\0totp")
    assert sealer.open(sealed, "alice\0totp") == b"secret"
    assert sealed != sealer.seal(b"secret", "alice\0totp")  # a fresh nonce each time
    flipped = sealed[:-2] + ("A" if sealed[-2] != "A" else "B") + sealed[-1]
    for bad in (flipped, sealed.replace("v1.a.", "v1.z."), "plain", sealed.replace("v1.", "v2.")):
        with pytest.raises(SealError):
            sealer.open(bad, "alice\0totp")
    assert not sealer.needs_reseal(sealed) and Sealer((KEY_B, KEY_A)).needs_reseal(sealed)


async def test_a_database_that_is_down_is_a_503(tmp_path: Path) -> None:
    from gateway.stores.base import StoreUnavailable
    from tests.conftest import free_port

    store = _store(f"postgresql://postgres@127.0.0.1:{free_port()}/nothing")
    try:
        with pytest.raises(StoreUnavailable):
            await store.start()
    finally:
        await store.close()


async def test_gateway_run_creates_the_schema_on_start_with_several_workers(
    gateway_process: Any, users_file: Path, tmp_path: Path, redis_url: str
) -> None:
    """The real `gateway run`, two worker processes on one SQLite file: both migrate on start, one schema results,
    and a factor enrolled through the running gateway is in the file."""
    import sqlite3

    import aiohttp
    import pyotp

    from tests.conftest import PASSWORDS, base_config, bearer

    path = tmp_path / "db" / "credentials.db"
    raw = base_config("http://127.0.0.1:9", users_file, credentials={"url": f"sqlite:///{path}", "keys": [
        {"id": "k1", "secret": KEY_A.secret.get_secret_value()}]}, second_factor={}, store={"backend": "redis", "url": redis_url})
    base = f"http://127.0.0.1:{gateway_process(raw, '--workers', '2')}"
    async with aiohttp.ClientSession(base) as http:
        async with http.post("/auth/token", json={"username": "bob", "password": PASSWORDS["bob"]}) as resp:
            access = (await resp.json())["access"]
        async with http.post("/auth/mfa/totp", headers=bearer(access)) as resp:
            assert resp.status == 200, await resp.text()
            otp = pyotp.TOTP((await resp.json())["secret"])
        async with http.post("/auth/mfa/totp/confirm", json={"code": otp.now()}, headers=bearer(access)) as resp:
            assert resp.status == 200, await resp.text()
    with sqlite3.connect(path) as db:
        assert [r[0] for r in db.execute("SELECT version FROM gw_schema_version")] == list(range(1, LATEST + 1))
        kinds = {r[0] for r in db.execute("SELECT kind FROM gw_credentials WHERE subject = 'bob'")}
    assert kinds == {"totp", "recovery"}


def _authenticator(subject: str, name: str, credential_id: str, count: int = 0) -> Authenticator:
    return Authenticator(credential_id=credential_id, subject=subject, name=name, public_key="pQECAyYgASFYIA", sign_count=count,
                         aaguid="00000000-0000-0000-0000-000000000000", transports=("internal", "hybrid"), multi_device=False,
                         created_at=1_700_000_000, last_used_at=None)


async def test_several_named_webauthn_authenticators_per_user(store: CredentialStore) -> None:
    long_id = "A" * 1300  # longer than a MariaDB key may be: the row is keyed by its digest
    assert await store.add_authenticator(_authenticator("alice", "laptop", long_id))
    assert await store.add_authenticator(_authenticator("alice", "phone", "cGhvbmU"))
    assert not await store.add_authenticator(_authenticator("alice", "phone", "b3RoZXI")), "a name is unique per user"
    assert not await store.add_authenticator(_authenticator("bob", "key", "cGhvbmU")), "an id is registered once"
    assert [a.name for a in await store.authenticators("alice")] == ["laptop", "phone"]
    found = await store.authenticator(long_id)
    assert found is not None and found.subject == "alice" and found.transports == ("internal", "hybrid")
    assert await store.authenticator("A" * 1299) is None
    assert await store.methods("alice") == ["webauthn"] and await store.methods("bob") == []
    assert await store.remove_authenticator("alice", "laptop") and not await store.remove_authenticator("alice", "laptop")
    await store.remove_all("alice")
    assert await store.authenticators("alice") == []


async def test_a_sign_count_moves_forward_for_exactly_one_of_concurrent_uses(store: CredentialStore) -> None:
    await store.add_authenticator(_authenticator("alice", "key", "a2V5", count=5))
    results = await asyncio.gather(*(store.record_use("a2V5", 5, 6 + i) for i in range(4)))
    assert sorted(results) == [False, False, False, True]
    found = await store.authenticator("a2V5")
    assert found is not None and found.sign_count in (6, 7, 8, 9) and found.last_used_at is not None


async def test_an_authenticator_without_a_counter_is_used_twice_in_one_second(store: CredentialStore) -> None:
    await store.add_authenticator(_authenticator("alice", "passkey", "cGFzc2tleQ"))
    assert await store.record_use("cGFzc2tleQ", 0, 0) and await store.record_use("cGFzc2tleQ", 0, 0)


async def test_the_enrolment_grace_record_is_written_once_and_ended_once(database_url: str) -> None:
    """Migration 4 (gw_enrolment_grace): two instances starting a user's grace together agree on its first moment,
    and of two ending it exactly one reports the end; a reset closes it, or forgets it when asked for a new one."""
    one, two = _store(database_url), _store(database_url)
    await one.start()
    await two.start()
    try:
        assert await one.grace.get("alice") is None
        one.grace.clock = lambda: 1_000_000.0
        two.grace.clock = lambda: 1_000_005.0
        (first, a), (second, b) = await asyncio.gather(one.grace.begin("alice"), two.grace.begin("alice"))
        assert first == second and first.ended_at is None and first.started_at in (1_000_000, 1_000_005)
        assert sorted([a, b]) == [False, True]
        assert (await one.grace.begin("alice")) == (first, False)  # a later login keeps the first moment
        assert first.open_at(first.started_at + 59, 60) and not first.open_at(first.started_at + 60, 60)
        ended = await asyncio.gather(one.grace.end("alice"), two.grace.end("alice"))
        assert sorted(ended) == [False, True]
        assert (await two.grace.get("alice")).ended_at is not None  # type: ignore[union-attr]
        assert await one.grace.close("bob") is False  # never had one: an ended record, no new window later
        bob = await one.grace.get("bob")
        assert bob is not None and bob.ended_at == bob.started_at == 1_000_000
        assert await one.grace.forget("bob") is True and await one.grace.get("bob") is None
        await one.grace.begin("carol")
        assert await one.grace.close("carol") is True  # a running grace ended by a reset
    finally:
        await one.close()
        await two.close()
