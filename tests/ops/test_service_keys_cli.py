"""`gateway service-keys create|list|revoke` as subprocesses against a real `gateway run` (SQLite credentials
database): the key printed once and accepted in the header and as a bearer on an opted-in route, listed by prefix
only, revoked and then refused; a wrong admin key fails with the gateway's code."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

from tests.conftest import base_config, bearer, gateway_command
from tests.ops.test_admin_cli import generate, http, start

SEALING = "credentials-sealing-key-0123456789-abcdef"


def keys_cli(*args: str, key: str, config: Path) -> subprocess.CompletedProcess[str]:
    env = {**{k: v for k, v in os.environ.items() if k != "GATEWAY_ADMIN_KEY"}, "GATEWAY_ADMIN_KEY": key}
    return subprocess.run([*gateway_command(), "service-keys", *args, "--config", str(config)], capture_output=True,
                          text=True, env=env, timeout=60)


def config(upstream: str, users_file: Path, tmp_path: Path) -> dict[str, Any]:
    raw = base_config(upstream, users_file)
    raw["credentials"] = {"url": f"sqlite:///{tmp_path / 'credentials.db'}", "keys": [{"id": "k1", "secret": SEALING}]}
    raw["service_keys"] = {"cache": "1s"}
    raw["routes"] = [{"name": "jobs", "prefix": "/jobs", "upstream": upstream, "service_keys": True,
                      "headers": {"X-User-Id": "sub", "X-User-Roles": "roles"}}, *raw["routes"]]
    return raw


def test_service_keys_through_the_cli(gateway_process, upstream_process, users_file, tmp_path):  # noqa: F811
    admin_key, entry = generate("ops-alice")
    port, path = start(gateway_process, config(upstream_process, users_file, tmp_path), entry)

    created = keys_cli("create", "nightly-export", "--owner", "team-data", "--claim", "roles=reader",
                       "--claim", "roles=export", "--expires", "30d", key=admin_key, config=path)
    assert created.returncode == 0, created.stderr
    key = created.stdout.splitlines()[2]
    assert key.startswith("gwsk_") and len(key) == 48

    for headers in ({"X-Api-Key": key}, bearer(key)):
        status, body = http("GET", f"http://127.0.0.1:{port}/jobs/run", headers=headers)
        seen = {k.lower(): v for k, v in body["headers"].items()}
        assert status == 200 and seen["x-user-id"] == "service:nightly-export" and seen["x-user-roles"] == "reader,export"
        assert "x-api-key" not in seen and "authorization" not in seen
    status, body = http("GET", f"http://127.0.0.1:{port}/api/x", headers={"X-Api-Key": key})
    assert status == 401 and body["code"] == "service_key_not_accepted"

    listed = keys_cli("list", key=admin_key, config=path)
    assert listed.returncode == 0 and "1 service key(s)" in listed.stdout
    assert f"nightly-export  {key[:12]}..." in listed.stdout and key not in listed.stdout and "live" in listed.stdout
    taken = keys_cli("create", "nightly-export", "--owner", "x", key=admin_key, config=path)
    assert taken.returncode == 1 and "409" in taken.stderr and "service_key_exists" in taken.stderr
    bad = keys_cli("create", "x", "--owner", "o", "--claim", "sub=root", key=admin_key, config=path)
    assert bad.returncode == 1 and "400" in bad.stderr

    revoked = keys_cli("revoke", "nightly-export", key=admin_key, config=path)
    assert revoked.returncode == 0 and revoked.stdout.startswith("revoked nightly-export"), revoked.stderr
    status, body = http("GET", f"http://127.0.0.1:{port}/jobs/run", headers={"X-Api-Key": key})
    assert status == 401 and body["code"] == "service_key_revoked"
    assert json.loads(keys_cli("list", "--json", key=admin_key, config=path).stdout)["service_keys"][0]["revoked"] is not None

    wrong = keys_cli("list", key=admin_key[:-2] + "xx", config=path)
    assert wrong.returncode == 1 and "admin_key_invalid" in wrong.stderr
