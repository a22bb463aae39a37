"""`tokens.password_change_ends_sessions`: a changed stored hash in PostgreSQL (Django's table) or in the users file
ends the sessions begun before it at their next refresh, while the gateway's own `rehash_on_login` (on another
instance, sharing Redis) does not; off by default."""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from gateway.app import create_app
from gateway.config import load_config, parse_config
from gateway.runtime import GATEWAY
from gateway.server.reload import Reloader
from gateway.sources.users import hash_password
from gateway.stores.redis import RedisStore
from tests.ops.sources.conftest import sources_config
from tests.support.sources import Database

OLD_PASSWORD = "hash-pbkdf2_sha1-pw"  # the password of Django's pbkdf2_sha1 user (tests/legacy/django_users.py)
NEW_PASSWORD = "hash-pbkdf2_sha256-pw"


def new_user(db: Database, dbname: str, user: str) -> None:
    """A user with the pbkdf2_sha1 user's hash: a format rehash_on_login upgrades."""
    db.run(dbname, "INSERT INTO auth_user (username, password, is_active, is_staff, is_superuser, first_name, last_name,"
           " email, date_joined) SELECT %s, password, TRUE, FALSE, FALSE, '', '', '', now() FROM auth_user"
           " WHERE username = 'hash-pbkdf2_sha1'", params=(user,))


def change_password(db: Database, dbname: str, user: str) -> None:
    """What the app's own "change password" does: another hash (the pbkdf2_sha256 user's) in the column."""
    db.run(dbname, "UPDATE auth_user SET password = (SELECT password FROM auth_user WHERE username = "
           "'hash-pbkdf2_sha256') WHERE username = %s", params=(user,))


async def login(client: Any, user: str, password: str) -> dict[str, Any]:
    resp = await client.post("/auth/token", json={"username": user, "password": password})
    assert resp.status == 200, await resp.text()
    return dict(await resp.json())


async def refresh(client: Any, token: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    resp = await client.post("/auth/token/refresh", json={"refresh": token["refresh"]})
    body = dict(await resp.json())
    if resp.status == 200:
        token["refresh"] = body["refresh"]
    return resp.status, body


async def gateway(aiohttp_client: Any, upstream: str, tmp_path: Path, url: str, redis_url: str, *, rehash: bool,
                  ends: bool = True) -> Any:
    entry = {"sql": {"url": url, "preset": "django", "timeout": "10s", "rehash_on_login": rehash}}
    raw = sources_config(upstream, [entry], tokens={"password_change_ends_sessions": ends},
                         store={"backend": "redis", "url": redis_url})
    config = parse_config(copy.deepcopy(raw), tmp_path)
    return await aiohttp_client(create_app(config, store=RedisStore(redis_url)))


async def test_a_changed_hash_ends_earlier_sessions_but_a_rehash_does_not(aiohttp_client, upstream, tmp_path, postgres,
                                                                          django_postgres, redis_url):
    user = "pw-change-1"
    new_user(postgres, django_postgres, user)
    url = postgres.url(django_postgres)
    plain = await gateway(aiohttp_client, upstream, tmp_path, url, redis_url, rehash=False)
    upgrading = await gateway(aiohttp_client, upstream, tmp_path, url, redis_url, rehash=True)

    before = await login(plain, user, OLD_PASSWORD)  # its session records the pbkdf2_sha1 hash
    upgraded = await login(upgrading, user, OLD_PASSWORD)  # the other instance rehashes to argon2id
    [(stored,)] = postgres.run(django_postgres, "SELECT password FROM auth_user WHERE username = %s", params=(user,))
    assert stored.startswith("argon2$argon2id$")
    assert (await refresh(plain, before))[0] == 200  # the gateway's own rehash is no password change
    assert (await refresh(upgrading, upgraded))[0] == 200

    change_password(postgres, django_postgres, user)
    for client, token in ((plain, before), (upgrading, upgraded)):
        status, body = await refresh(client, token)
        assert status == 401 and body["code"] == "token_revoked", body
        assert (await client.get("/api/x", headers={"Authorization": f"Bearer {token['access']}"})).status == 401
    after = await login(plain, user, NEW_PASSWORD)
    assert (await refresh(plain, after))[0] == 200  # begun after the change: it goes on


async def test_off_by_default(aiohttp_client, upstream, tmp_path, postgres, django_postgres, redis_url):
    user = "pw-change-2"
    new_user(postgres, django_postgres, user)
    gw = await gateway(aiohttp_client, upstream, tmp_path, postgres.url(django_postgres), redis_url, rehash=False,
                       ends=False)
    token = await login(gw, user, OLD_PASSWORD)
    change_password(postgres, django_postgres, user)
    assert (await refresh(gw, token))[0] == 200


async def test_a_changed_users_file_ends_sessions_after_the_reload(aiohttp_client, upstream, tmp_path):
    users = tmp_path / "users.yaml"

    def write(password: str) -> None:
        users.write_text(yaml.safe_dump({"users": {"dora": {"password_hash": hash_password(password), "claims": {}},
                                                   "emil": {"password_hash": hash_password("emil-pw"), "claims": {}}}}))

    write("dora-old")
    raw = sources_config(upstream, [{"file": str(users)}], tokens={"password_change_ends_sessions": True})
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(raw))
    app = create_app(load_config(path))
    client = await aiohttp_client(app)
    dora, emil = await login(client, "dora", "dora-old"), await login(client, "emil", "emil-pw")
    assert (await refresh(client, dora))[0] == 200
    write("dora-new")  # emil's hash is rewritten too (a new salt): to the gateway that is a change as well
    raw["users"] = [{"file": str(users)}]
    assert await Reloader(app[GATEWAY], path).reload()
    status, body = await refresh(client, dora)
    assert status == 401 and body["code"] == "token_revoked"
    assert (await refresh(client, emil))[0] == 401
    fresh = await login(client, "dora", "dora-new")
    assert (await refresh(client, fresh))[0] == 200
