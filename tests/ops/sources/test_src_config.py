"""The users: section: validation with locations, paths, `gateway check --probe`, and reloads keeping pools."""
from __future__ import annotations

import copy
import subprocess
import sys

import pytest
import yaml

from gateway.config import ConfigError, parse_config
from gateway.runtime import Gateway, Runtime
from gateway.server.reload import Reloader
from gateway.sources.chain import UserChain
from gateway.stores import MemoryStore
from tests.conftest import ROOT, base_config
from tests.ops.sources.conftest import file_users, sources_config


def problems(raw: dict, tmp_path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(raw, tmp_path)
    return caught.value.problems


def test_exactly_one_of_users_file_and_users(tmp_path):
    raw = sources_config("http://127.0.0.1:1", [{"file": "users.yaml"}])
    raw["users_file"] = "users.yaml"
    assert any("not both" in p for p in problems(raw, tmp_path))
    raw = base_config("http://127.0.0.1:1", tmp_path / "u.yaml")
    del raw["users_file"]
    assert any("users_file: required" in p for p in problems(raw, tmp_path))


@pytest.mark.parametrize("entry,expected", [
    ({"sql": {"url": "postgresql://db/app", "query": "SELECT * FROM u WHERE name = '%s'"}},
     "users[0].sql: query: must use the :login parameter"),
    ({"sql": {"url": "oracle://db/app", "preset": "django"}}, "users[0].sql.url: scheme must be one of"),
    ({"sql": {"url": "postgresql://db/app"}}, "users[0].sql: give a query or a preset"),
    ({"sql": {"url": "postgresql://db/app", "preset": "django", "bogus": 1}}, "users[0].sql.bogus: unknown key"),
    ({"sql": {"url": "postgresql://db/app", "preset": "django", "cache": "1h"}}, "users[0].sql.cache: at most 5m"),
    ({"file": "a.yaml", "sql": {"url": "sqlite:///x", "preset": "generic"}}, "users[0]: each entry is exactly one of"),
    ({"ldap": {"url": "ldap://x"}}, "users[0].ldap: give user_base"),
    ({"ldap": {"url": "ldap://x", "user_dn": "uid=x,dc=y"}}, "users[0].ldap: user_dn: must contain {login}"),
    ({"http": {"url": "ftp://x"}}, "users[0].http.url: must be an http:// or https:// URL"),
    ({"http": {"url": "http://x", "user_url": "http://x/users"}}, "users[0].http.user_url: must contain {login}"),
])
def test_source_settings_are_checked_with_their_location(tmp_path, entry, expected):
    raw = sources_config("http://127.0.0.1:1", [entry])
    found = problems(raw, tmp_path)
    assert any(expected in p for p in found), found


def test_relative_paths_are_relative_to_the_config_file(tmp_path):
    raw = sources_config("http://127.0.0.1:1", [{"file": "users.yaml"}, {"sql": {"url": "sqlite:///app.db", "preset": "django"}}])
    config = parse_config(raw, tmp_path)
    assert config.users[0].file == tmp_path / "users.yaml"
    assert config.users[1].sql.url.get_secret_value() == f"sqlite:///{tmp_path}/app.db"
    assert "app.db" not in repr(config)  # the URL may hold a password: never in a repr or a log


def gateway_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway", *args], capture_output=True, text=True, cwd=ROOT, timeout=60)


def test_check_probe_connects_and_runs_the_query(tmp_path, postgres, django_postgres):
    path = tmp_path / "gw.yaml"
    raw = sources_config("http://127.0.0.1:1", [{"file": str(file_users(tmp_path))},
                                                 {"sql": {"url": postgres.url(django_postgres), "preset": "django"}}])
    path.write_text(yaml.safe_dump(raw))
    result = gateway_cli("check", str(path), "--probe")
    assert result.returncode == 0, result.stderr
    assert "OK (4 routes, 3 users, 2 user sources" in result.stdout
    assert "probe file[0]: OK (3 users)" in result.stdout and "probe sql[1]: OK (query ran)" in result.stdout
    raw["users"][1]["sql"]["query"] = "SELECT username AS login FROM no_such_table WHERE username = :login"
    path.write_text(yaml.safe_dump(raw))
    assert gateway_cli("check", str(path)).returncode == 0  # without --probe nothing connects
    result = gateway_cli("check", str(path), "--probe")
    assert result.returncode == 1 and "probe sql[1]: FAILED" in result.stderr


async def test_a_reload_keeps_unchanged_sources_and_their_pools(tmp_path, postgres, django_postgres):
    sql = {"sql": {"url": postgres.url(django_postgres), "preset": "django"}}
    raw = sources_config("http://127.0.0.1:1", [{"file": str(file_users(tmp_path))}, sql])
    path = tmp_path / "gw.yaml"
    path.write_text(yaml.safe_dump(raw))
    store = MemoryStore()
    gateway = Gateway(Runtime.build(parse_config(copy.deepcopy(raw), tmp_path), store), store, None)  # type: ignore[arg-type]
    before: UserChain = gateway.runtime.users
    assert await Reloader(gateway, path).reload()
    after = gateway.runtime.users
    assert after.sources[1] is before.sources[1] and after.sources[0] is not before.sources[0]
    raw["users"][1]["sql"]["timeout"] = "2s"
    path.write_text(yaml.safe_dump(raw))
    assert await Reloader(gateway, path).reload()
    assert gateway.runtime.users.sources[1] is not after.sources[1]
    await gateway.runtime.users.close()


async def test_a_real_gateway_process_logs_in_from_its_sources(gateway_process, upstream, tmp_path, django_sqlite):
    import aiohttp

    raw = sources_config(upstream, [{"file": str(file_users(tmp_path))},
                                    {"sql": {"url": f"sqlite:///{django_sqlite}", "preset": "django"}}])
    port = gateway_process(raw)
    async with aiohttp.ClientSession() as client:
        for user in ("carol", "alice", "bob"):  # carol: disabled in the file, inactive in Django
            async with client.post(f"http://127.0.0.1:{port}/auth/token",
                                   json={"username": user, "password": f"{user}-pw"}) as resp:
                assert resp.status == (401 if user == "carol" else 200)
        async with client.post(f"http://127.0.0.1:{port}/auth/token",
                               json={"username": "hash-argon2", "password": "hash-argon2-pw"}) as resp:
            assert resp.status == 200  # not in the file: Django's table decides
        async with client.get(f"http://127.0.0.1:{port}/readyz") as resp:
            assert (await resp.json())["sources"] == {"file[0]": "up", "sql[1]": "up"}
        async with client.get(f"http://127.0.0.1:{port}/metrics") as resp:
            assert 'gateway_user_source_calls_total{operation="check",result="found",source="sql[1]"} 1.0' in await resp.text()
