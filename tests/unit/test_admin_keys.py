"""Named admin keys: generated keys and their digests, `admin.keys` and `admin.keys_file` read and refused with
file:line, the bad value and what is expected, constant-time identification, and a reload that may change them."""
from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import yaml

from gateway.auth.admin_keys import KEY_PREFIX, AdminKeys, generate_admin_key, key_digest
from gateway.check import load_all
from gateway.config import ConfigError, load_config, parse_config
from gateway.server.reload import restart_only_changes

SECRET = "test-secret-that-is-long-enough-0123456789"


def config(tmp_path: Path, admin: dict[str, object]) -> dict[str, object]:
    users = tmp_path / "users.yaml"
    users.write_text("users: {}\n")
    return {"tokens": {"secret": SECRET}, "users_file": str(users), "admin": admin,
            "routes": [{"name": "api", "prefix": "/api", "upstream": "http://127.0.0.1:9"}]}


def test_a_generated_key_is_long_random_and_its_digest_is_sha256():
    key, digest = generate_admin_key()
    other, _ = generate_admin_key()
    assert key.startswith(KEY_PREFIX) and len(key) >= len(KEY_PREFIX) + 43 and key != other
    assert digest == hashlib.sha256(key.encode()).hexdigest() == key_digest(key)


def test_keys_from_config_and_file_are_identified_by_name(tmp_path):
    key1, digest1 = generate_admin_key()
    key2, digest2 = generate_admin_key()
    (tmp_path / "keys.txt").write_text(f"# the on-call team\n\nops-bob {digest2}   # since 2026-12\n")
    raw = config(tmp_path, {"keys": [{"name": "ops-alice", "sha256": digest1}], "keys_file": "keys.txt"})
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(raw))
    keys = AdminKeys.from_config(load_config(path).admin)  # keys_file relative to the config file
    assert keys.names == ["ops-alice", "ops-bob"]
    assert keys.identify(key1) == "ops-alice" and keys.identify(key2) == "ops-bob"
    for wrong in ("", key1[:-1], key1 + "a", digest1, "x" * 10_000, key1.upper()):
        assert keys.identify(wrong) is None
    assert not AdminKeys.from_config(None) and not AdminKeys.from_config(load_config(path).admin.model_copy(
        update={"keys": (), "keys_file": None}))


@pytest.mark.parametrize(("entry", "message"), [
    ({"name": "ops alice", "sha256": "a" * 64}, "admin.keys[0].name: must be 1-64 letters"),
    ({"name": "ops", "sha256": "A" * 64}, "64 lowercase hex digits (`gateway admin-key generate NAME` prints it) (got 'AAAA"),
    ({"name": "ops", "sha256": "abc"}, "admin.keys[0].sha256: must be the key's SHA-256"),
    ({"name": "ops"}, "admin.keys[0].sha256"),
    ({"name": "ops", "sha256": "a" * 64, "key": "plain"}, "admin.keys[0].key"),
])
def test_bad_config_entries_are_refused(tmp_path, entry, message):
    with pytest.raises(ConfigError) as exc:
        parse_config(config(tmp_path, {"keys": [entry]}), tmp_path)
    assert message in str(exc.value)


def test_a_name_given_twice_is_refused(tmp_path):
    digest = "b" * 64
    with pytest.raises(ConfigError, match="each name once"):
        parse_config(config(tmp_path, {"keys": [{"name": "ops", "sha256": digest}, {"name": "ops", "sha256": digest}]}),
                     tmp_path)
    (tmp_path / "keys.txt").write_text(f"ops {digest}\n")
    admin = parse_config(config(tmp_path, {"keys": [{"name": "ops", "sha256": digest}], "keys_file": "keys.txt"}),
                         tmp_path).admin
    with pytest.raises(ConfigError) as exc:
        AdminKeys.from_config(admin)
    assert f"{tmp_path / 'keys.txt'}:1: admin key name 'ops' is also given at admin.keys" in str(exc.value)


def test_bad_key_file_lines_name_file_line_value_and_what_is_expected(tmp_path):
    (tmp_path / "keys.txt").write_text(f"ok {'c' * 64}\nonly-a-name\nbad/name {'c' * 64}\nops NOTHEX\n")
    admin = parse_config(config(tmp_path, {"keys_file": "keys.txt"}), tmp_path).admin
    with pytest.raises(ConfigError) as exc:
        AdminKeys.from_config(admin)
    file = tmp_path / "keys.txt"
    assert exc.value.problems == [
        f"{file}:2: 'only-a-name': expected `NAME SHA256` (two fields, e.g. the line `gateway admin-key generate NAME` "
        "prints)",
        f"{file}:3: must be 1-64 letters, digits, . _ @ or -, starting with a letter or digit (e.g. ops-alice) "
        "(got 'bad/name')",
        f"{file}:4: must be the key's SHA-256 as 64 lowercase hex digits (`gateway admin-key generate NAME` "
        "prints it) (got 'NOTHEX')",
    ]
    missing = parse_config(config(tmp_path, {"keys_file": "nowhere.txt"}), tmp_path).admin
    with pytest.raises(ConfigError, match=r"admin.keys_file: cannot read .*nowhere.txt \(FileNotFoundError\)"):
        AdminKeys.from_config(missing)


def test_a_reload_may_change_the_keys_but_not_the_listener(tmp_path):
    running = parse_config(config(tmp_path, {"port": 9090}), tmp_path)
    keyed = parse_config(config(tmp_path, {"port": 9090, "keys": [{"name": "ops", "sha256": "d" * 64}]}), tmp_path)
    moved = parse_config(config(tmp_path, {"port": 9091}), tmp_path)
    assert restart_only_changes(running, keyed) == []
    assert restart_only_changes(running, moved) == ["admin: changing the admin listener needs a restart (its keys may change)"]


def test_gateway_check_reads_the_keys_file(tmp_path):
    (tmp_path / "keys.txt").write_text("ops-alice not-a-digest\n")
    raw = config(tmp_path, {"keys_file": "keys.txt"})
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError) as exc:
        load_all(path)
    assert exc.value.problems == [
        f"{tmp_path / 'keys.txt'}:1: must be the key's SHA-256 as 64 lowercase hex digits (`gateway admin-key generate "
        "NAME` prints it) (got 'not-a-digest')"]
    (tmp_path / "keys.txt").write_text(f"ops-alice {'e' * 64}\n")
    assert load_all(path)[0].admin is not None
