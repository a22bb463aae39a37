"""`gateway sessions list|revoke` and `gateway admin-key generate` as subprocesses against real `gateway run`
processes: the memory store (one process), and Redis with two instances, where a session revoked through one
instance's admin API is refused by the other; a missing or wrong key fails with the gateway's code."""
from __future__ import annotations

import json
import os
import subprocess
import urllib.error
import urllib.request
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from gateway.auth.admin_keys import key_digest
from tests.conftest import PASSWORDS, base_config, bearer, free_port, gateway_command, wait_for_port


def generate(name: str) -> tuple[str, str]:
    """The key and the config line, as an operator gets them from the CLI."""
    out = subprocess.run([*gateway_command(), "admin-key", "generate", name], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    key = lines[1]
    entry = yaml.safe_load(lines[3])[0]
    assert entry == {"name": name, "sha256": key_digest(key)} and lines[5] == f"{name} {key_digest(key)}"
    return key, entry


def cli(*args: str, key: str | None = None, config: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "GATEWAY_ADMIN_KEY"}
    if key is not None:
        env["GATEWAY_ADMIN_KEY"] = key
    extra = ["--config", str(config)] if config is not None else []
    return subprocess.run([*gateway_command(), "sessions", *args, *extra], capture_output=True, text=True, env=env,
                          timeout=60)


def http(method: str, url: str, body: dict[str, Any] | None = None, headers: dict[str, str] | None = None
         ) -> tuple[int, dict[str, Any]]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method,
                                     headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def login(port: int, user: str = "alice", agent: str = "cli-test") -> dict[str, Any]:
    status, body = http("POST", f"http://127.0.0.1:{port}/auth/token", {"username": user, "password": PASSWORDS[user]},
                        {"User-Agent": agent})
    assert status == 200, body
    return body


def start(gateway_process, raw: dict[str, Any], key_entry: dict[str, str]) -> tuple[int, Path]:
    admin_port = free_port()
    port = gateway_process({**raw, "admin": {"host": "0.0.0.0", "port": admin_port, "keys": [key_entry]}})
    wait_for_port(admin_port)
    return port, gateway_process.config_path(port)


def test_sessions_through_the_cli_with_the_memory_store(gateway_process, upstream_process, users_file, tmp_path):
    key, entry = generate("ops-alice")
    port, config = start(gateway_process, base_config(upstream_process, users_file), entry)
    first, second = login(port, agent="Firefox/120"), login(port, agent="curl/8")
    login(port, "bob")

    listed = cli("list", "alice", key=key, config=config)
    assert listed.returncode == 0, listed.stderr
    assert "2 live session(s) of 'alice'" in listed.stdout and "Firefox/120" in listed.stdout
    assert "password" in listed.stdout and "127.0.0.1" in listed.stdout
    sessions = json.loads(cli("list", "alice", "--json", key=key, config=config).stdout)["sessions"]
    by_agent = {s["user_agent"]: s["session"] for s in sessions}

    key_file = tmp_path / "admin.key"
    key_file.write_text(key + "\n")
    revoked = cli("revoke", "alice", "--session", by_agent["Firefox/120"], "--admin-key-file", str(key_file),
                  config=config)
    assert revoked.returncode == 0, revoked.stderr
    assert revoked.stdout.strip() == f"1 session(s) revoked: {by_agent['Firefox/120']}"
    status, body = http("GET", f"http://127.0.0.1:{port}/api/x", headers=bearer(first["access"]))
    assert status == 401 and body["code"] == "token_revoked"
    assert http("GET", f"http://127.0.0.1:{port}/api/x", headers=bearer(second["access"]))[0] == 200

    bob_session = json.loads(cli("list", "bob", "--json", key=key, config=config).stdout)["sessions"][0]["session"]
    refused = cli("revoke", "alice", "--session", bob_session, key=key, config=config)
    assert refused.returncode == 1 and "404" in refused.stderr and "session_not_found" in refused.stderr

    everything = cli("revoke", "alice", key=key, config=config)
    assert everything.returncode == 0 and everything.stdout.startswith("1 session(s) revoked")
    assert http("GET", f"http://127.0.0.1:{port}/api/x", headers=bearer(second["access"]))[0] == 401
    assert "0 live session(s)" in cli("list", "alice", key=key, config=config).stdout


def test_the_cli_without_or_with_a_wrong_key(gateway_process, upstream_process, users_file):
    key, entry = generate("ops-alice")
    port, config = start(gateway_process, base_config(upstream_process, users_file), entry)
    missing = cli("list", "alice", config=config)
    assert missing.returncode == 1 and "no admin key" in missing.stderr
    wrong = cli("list", "alice", key=key[:-2] + "xx", config=config)
    assert wrong.returncode == 1 and "401" in wrong.stderr and "admin_key_invalid" in wrong.stderr
    assert key not in wrong.stderr + wrong.stdout
    # the key on the main listener: no admin API there
    status, body = http("GET", f"http://127.0.0.1:{port}/admin/api/sessions?user=alice", headers=bearer(key))
    assert status in {401, 404} and body["code"] in {"not_found", "token_not_valid"}  # base_config routes /admin
    assert cli("list", "alice", key=key, config=config).returncode == 0


def test_a_revocation_through_one_instance_ends_the_session_on_another(gateway_process, upstream_process, users_file,
                                                                       redis_url):
    key, entry = generate("ops-bob")
    raw = base_config(upstream_process, users_file, store={"backend": "redis", "url": redis_url})
    port_a, _ = start(gateway_process, raw, entry)
    port_b, config_b = start(gateway_process, raw, entry)
    session = login(port_a)
    assert http("GET", f"http://127.0.0.1:{port_a}/api/x", headers=bearer(session["access"]))[0] == 200
    listed = json.loads(cli("list", "alice", "--json", key=key, config=config_b).stdout)["sessions"]
    assert len(listed) == 1 and listed[0]["user_agent"] == "cli-test"
    revoked = cli("revoke", "alice", key=key, config=config_b)
    assert revoked.returncode == 0, revoked.stderr
    status, body = http("GET", f"http://127.0.0.1:{port_a}/api/x", headers=bearer(session["access"]))
    assert status == 401 and body["code"] == "token_revoked"
    status, body = http("POST", f"http://127.0.0.1:{port_a}/auth/token/refresh", {"refresh": session["refresh"]})
    assert status == 401
    log = gateway_process.log(port_b)
    assert key not in log and session["access"] not in log


def mfa_cli(*args: str, key: str, config: Path) -> subprocess.CompletedProcess[str]:
    env = {**{k: v for k, v in os.environ.items() if k != "GATEWAY_ADMIN_KEY"}, "GATEWAY_ADMIN_KEY": key}
    return subprocess.run([*gateway_command(), "mfa", *args, "--config", str(config)], capture_output=True, text=True,
                          env=env, timeout=60)


def test_mfa_list_shows_the_enrolment_grace_and_reset_grants_a_new_one_only_when_asked(
    gateway_process, upstream_process, users_file, tmp_path
):
    key, entry = generate("ops-mfa")
    raw = {**base_config(upstream_process, users_file),
           "credentials": {"url": f"sqlite:///{tmp_path / 'credentials.db'}", "keys": [{"id": "k1", "secret": "k" * 40}]},
           "second_factor": {"required": "everyone", "grace_period": "1d"}}
    port, config = start(gateway_process, raw, entry)
    due = login(port, "bob")["second_factor_enrolment_due"]
    listed = mfa_cli("list", "bob", key=key, config=config)
    shown = datetime.fromtimestamp(due, timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")
    assert listed.returncode == 0 and listed.stdout.strip() == f"'bob': no second factor; enrolment grace until {shown}"
    reset = mfa_cli("reset", "bob", key=key, config=config)
    assert reset.returncode == 0 and reset.stdout.strip().endswith("; no enrolment grace period")
    status, body = http("POST", f"http://127.0.0.1:{port}/auth/token", {"username": "bob", "password": PASSWORDS["bob"]})
    assert status == 401 and body["code"] == "second_factor_required" and body["enrol"]
    after = mfa_cli("list", "bob", key=key, config=config)
    assert "enrolment grace over (was until" in after.stdout and ", ended " in after.stdout
    renewed = mfa_cli("reset", "bob", "--grace", key=key, config=config)
    assert renewed.returncode == 0 and "a new enrolment grace period at the next login" in renewed.stdout
    assert login(port, "bob")["second_factor_enrolment_due"] >= due  # a password login again: a new window
