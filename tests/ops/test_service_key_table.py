"""The service keys' table (migration 2 of the credentials schema) on SQLite, PostgreSQL and MariaDB, each a real
database (tests/support/sources.py): a key created, found by its SHA-256 only, listed without it, names unique (also
when two instances create one name at once), revoked once, last use written; two verifiers on one database see a
revocation within their cache bound."""
from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import AsyncIterator

import pytest

from gateway.auth.service_keys import ServiceKeys, digest, generate_key, new_record
from gateway.config.factors import CredentialStoreSettings, SealingKey
from gateway.config.service_keys import ServiceKeySettings
from gateway.errors import GatewayError
from gateway.factors.service_keys import ServiceKeyTable
from gateway.factors.store import CredentialStore
from tests.support.sources import Database

pytestmark = pytest.mark.slow

KEY = SealingKey(id="a", secret="sealing-key-a-0123456789-0123456789")  # type: ignore[arg-type]


@pytest.fixture(params=["sqlite", "postgresql", "mariadb"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state' / 'credentials.db'}"
    server: Database = request.getfixturevalue("postgres" if request.param == "postgresql" else "mariadb")
    return server.url(server.create())


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[CredentialStore]:
    instance = CredentialStore.from_config(CredentialStoreSettings(url=database_url, keys=(KEY,)))
    await instance.start()
    yield instance
    await instance.close()


async def test_a_key_is_stored_hashed_found_by_digest_and_listed_without_it(store: CredentialStore) -> None:
    table = ServiceKeyTable(store.db)
    key = generate_key()
    now = time.time()
    record = new_record("ci-runner", "team-ci", {"roles": ["deploy"], "tier": 2}, key, int(now + 3600), now)
    assert await table.create(record)
    rows = await store.db.fetch("SELECT * FROM gw_service_keys")
    assert len(rows) == 1 and key not in str(rows) and rows[0]["digest"] == digest(key)
    found = await table.by_digest(digest(key))
    assert found is not None and found.name == "ci-runner" and found.claims == {"roles": ["deploy"], "tier": 2}
    assert found.prefix == key[:12] and found.expires_at == int(now + 3600) and found.revoked_at is None
    assert await table.by_digest(digest(generate_key())) is None
    (listed,) = await table.listing()
    assert "digest" not in listed.as_dict() and key not in str(listed.as_dict())


async def test_names_are_unique_also_under_concurrency(store: CredentialStore) -> None:
    table = ServiceKeyTable(store.db)
    now = time.time()
    records = [new_record("same", "o", {}, generate_key(), None, now) for _ in range(4)]
    created = await asyncio.gather(*(table.create(r) for r in records))
    assert sorted(created) == [False, False, False, True]
    assert len(await table.listing()) == 1


async def test_revoked_once_and_last_use_written(store: CredentialStore) -> None:
    table = ServiceKeyTable(store.db)
    key = generate_key()
    assert await table.create(new_record("k", "o", {}, key, None, time.time()))
    await table.touch("k", 1_700_000_000)
    found = await table.by_digest(digest(key))
    assert found is not None and found.last_used_at == 1_700_000_000
    assert await table.revoke("k") is True
    assert await table.revoke("k") is False
    assert await table.revoke("never") is False
    found = await table.by_digest(digest(key))
    assert found is not None and found.revoked_at is not None


async def test_two_verifiers_on_one_database_see_a_revocation_within_the_bound(database_url: str) -> None:
    settings = CredentialStoreSettings(url=database_url, keys=(KEY,))
    first, second = CredentialStore.from_config(settings), CredentialStore.from_config(settings)
    await first.start()
    await second.start()
    try:
        keys_settings = ServiceKeySettings(cache=0.5)
        one, two = ServiceKeys(keys_settings, ServiceKeyTable(first.db)), ServiceKeys(keys_settings, ServiceKeyTable(second.db))
        key = generate_key()
        assert await one.table.create(new_record("shared", "o", {"roles": ["r"]}, key, None, time.time()))
        assert (await two.verify(key))["sub"] == "service:shared"
        assert await one.table.revoke("shared")
        one.forget("shared")
        with pytest.raises(GatewayError) as refused:
            await one.verify(key)
        assert refused.value.code == "service_key_revoked"
        deadline = time.monotonic() + 0.5 + 5.0  # the bound, and a generous margin
        while True:
            try:
                await two.verify(key)
            except GatewayError as exc:
                assert exc.code == "service_key_revoked"
                break
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        await one.drain()
        await two.drain()
    finally:
        await first.close()
        await second.close()


async def test_a_database_that_is_down_is_a_503_not_a_500(tmp_path: Path) -> None:
    from tests.conftest import free_port

    url = f"postgresql://gw:pw@127.0.0.1:{free_port()}/nothing"  # nothing listens there
    store = CredentialStore.from_config(CredentialStoreSettings(url=url, keys=(KEY,), timeout=1.0))
    keys = ServiceKeys(ServiceKeySettings(), ServiceKeyTable(store.db))
    try:
        with pytest.raises(GatewayError) as down:
            await keys.verify(generate_key())
        assert down.value.status == 503 and down.value.code == "store_unavailable"
    finally:
        await store.close()


async def test_verification_is_cached_for_the_bound_known_and_unknown_keys_alike(store: CredentialStore) -> None:
    keys = ServiceKeys(ServiceKeySettings(cache=30), ServiceKeyTable(store.db))
    known, unknown = generate_key(), generate_key()
    assert await keys.table.create(new_record("cached", "o", {}, known, None, time.time()))
    assert (await keys.verify(known))["sub"] == "service:cached"
    with pytest.raises(GatewayError):
        await keys.verify(unknown)
    # the database changes behind the cache: within the bound the process answers as it looked up
    await store.db.execute("DELETE FROM gw_service_keys WHERE name = :name", name="cached")
    assert await keys.table.create(new_record("late", "o", {}, unknown, None, time.time()))
    assert (await keys.verify(known))["sub"] == "service:cached"
    with pytest.raises(GatewayError):
        await keys.verify(unknown)
    # a process without the cache sees the database at once
    fresh = ServiceKeys(ServiceKeySettings(cache=0), ServiceKeyTable(store.db))
    assert (await fresh.verify(unknown))["sub"] == "service:late"
    with pytest.raises(GatewayError):
        await fresh.verify(known)
    await keys.drain()
    await fresh.drain()
