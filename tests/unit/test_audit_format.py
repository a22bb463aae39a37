"""Audit events on paper: the JSON line (fields, RFC 3339 time, redaction of secret-named fields), the event names
docs/audit.md lists equal the code's, the receiver's signature check printed in docs/audit.md run against real
signatures and forged ones, the `audit` config section's refusals, and nginx's second ask marked in its config."""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import time
from pathlib import Path
from typing import Any

import pytest

from gateway.config import ConfigError, load_config, parse_config
from gateway.decision.configs import render
from gateway.observe.audit import EVENTS, LOGGER, REDACTED, RESERVED_PREFIXES, AuditFormatter
from gateway.observe.audit_sinks import signature
from gateway.server.reload import restart_only_changes
from tests.conftest import ROOT
from tests.support.audit import Verify, documented_verify

DOC = ROOT / "docs" / "audit.md"
SECRET = b"s" * 40


def _line(event: str, fields: dict[str, Any] | None) -> dict[str, Any]:
    record = logging.LogRecord(LOGGER, logging.INFO, __file__, 1, event, None, None)
    if fields is not None:
        record.audit = fields
    return json.loads(AuditFormatter().format(record))


def test_a_line_has_the_common_fields_first_then_the_events_own():
    line = _line("credential.refused", {"subject": "bob", "client": "203.0.113.7", "request_id": "r1",
                                        "reason": "insufficient", "route": "admin"})
    assert list(line)[:6] == ["time", "event", "subject", "client", "request_id", "reason"]
    assert line["event"] == "credential.refused" and line["route"] == "admin" and line["subject"] == "bob"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", line["time"]), line["time"]
    assert abs(time.mktime(time.strptime(line["time"][:19], "%Y-%m-%dT%H:%M:%S")) - time.mktime(time.gmtime())) < 5


def test_an_admin_style_record_without_the_helper_gets_every_common_field():
    """The admin API emits with ``log.info(name, extra={"audit": {...}})`` directly: the line is complete anyway."""
    line = _line("admin.sessions_revoked", {"admin": "ops-alice", "subject": "bob"})
    assert line["client"] is None and line["request_id"] is None and line["reason"] is None
    assert line["admin"] == "ops-alice"
    assert _line("config.reloaded", None)["subject"] is None


def test_fields_named_like_secrets_are_redacted_whoever_emits_them():
    line = _line("admin.key_created", {"password": "hunter2", "Token": "eyJx", "refresh_token": "r", "cookie": "c",
                                       "code": "abc", "secret": "s", "csrf_token": "t", "name": "deploy"})
    for name in ("password", "Token", "refresh_token", "cookie", "code", "secret", "csrf_token"):
        assert line[name] == REDACTED, name
    assert line["name"] == "deploy"
    text = json.dumps(line)
    assert not {"hunter2", "eyJx", "abc"} & set(re.findall(r"[\w]+", text))


def test_time_and_event_cannot_be_overridden_by_fields():
    line = _line("logout", {"time": "1970-01-01", "event": "login.succeeded"})
    assert line["event"] == "logout" and line["time"] != "1970-01-01"


def _doc_events() -> set[str]:
    section = DOC.read_text(encoding="utf-8").split("## Event names", 1)[1].split("\n## ", 1)[0]
    names = set()
    for row in section.splitlines():
        match = re.match(r"^\| `([a-z_.*]+)`", row)
        if match:
            names.add(match.group(1))
    return names


def test_the_documented_event_names_are_exactly_the_codes():
    documented = _doc_events()
    reserved = {name for name in documented if name.endswith(".*")}
    # names under a reserved prefix (admin.sessions_revoked, ...) belong to the features that emit them
    assert {n for n in documented - reserved if not n.startswith(RESERVED_PREFIXES)} == set(EVENTS)
    assert {p + "*" for p in RESERVED_PREFIXES} <= reserved | {"second_factor.*", "service_key.*"}
    assert "admin.*" in reserved
    assert {"second_factor.enrolled", "second_factor.verified", "second_factor.failed", "second_factor.recovery_used",
            "second_factor.removed", "second_factor.recovery_codes_replaced"} <= documented  # docs/second-factor.md
    assert {"service_key.created", "service_key.revoked", "service_key.refused"} <= documented  # docs/service-keys.md


@pytest.fixture(scope="module")
def verify() -> Verify:
    """The receiver's check exactly as docs/audit.md prints it."""
    return documented_verify()


def test_the_documented_check_accepts_the_gateways_signature(verify: Verify):
    body = b'{"event": "logout"}\n'
    assert verify(SECRET, signature(SECRET, int(time.time()), body), body)


def test_the_documented_check_rejects_forgeries(verify: Verify):
    body = b'{"event": "logout", "subject": "alice"}\n'
    now = int(time.time())
    good = signature(SECRET, now, body)
    assert not verify(b"x" * 40, good, body)  # signed with another secret
    assert not verify(SECRET, good, body.replace(b"alice", b"mallory"))  # the body changed
    assert not verify(SECRET, signature(SECRET, now - 3600, body), body)  # replayed an hour later
    forged_mac = hmac.new(SECRET, body, hashlib.sha256).hexdigest()  # without the timestamp
    assert not verify(SECRET, f"t={now},v1={forged_mac}", body)
    moved = good.replace(f"t={now}", f"t={now + 1}")  # a fresh timestamp on an old signature
    assert not verify(SECRET, moved, body)
    for header in ("", "garbage", "t=abc,v1=00", f"t={now}", "v1=" + "0" * 64, f"t={now},v1="):
        assert not verify(SECRET, header, body), header


def _config(tmp_path: Path, audit: dict[str, Any]) -> None:
    parse_config({"tokens": {"secret": "x" * 40}, "users_file": "users.yaml", "audit": audit}, tmp_path)


@pytest.mark.parametrize(("audit", "message"), [
    ({"sink": "file"}, "path: required with sink: file"),
    ({"sink": "stdout", "path": "a.jsonl"}, "only with sink: file"),
    ({"sink": "syslog"}, "audit.sink"),
    ({"webhook": {"url": "https://siem.example/in", "secret": "short"}}, "at least 32 bytes"),
    ({"webhook": {"url": "siem.example/in", "secret": "s" * 40}}, "not an absolute URL"),
    ({"webhook": {"url": "https://siem.example/in", "secret": "s" * 40, "queue_size": 0}}, "queue_size"),
    ({"webhook": {"url": "https://siem.example/in", "secret": "s" * 40, "timeout": "5m"}}, "between 0.1s and 60s"),
])
def test_bad_audit_settings_are_refused_with_where_and_what(tmp_path: Path, audit: dict[str, Any], message: str):
    with pytest.raises(ConfigError) as err:
        _config(tmp_path, audit)
    assert message in str(err.value), str(err.value)


def test_a_bad_value_in_a_file_is_reported_at_its_line(tmp_path: Path):
    path = tmp_path / "gateway.yaml"
    path.write_text("tokens:\n  secret: " + "x" * 40 + "\nusers_file: users.yaml\naudit:\n  sink: syslog\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert f"{path}:5: audit.sink" in str(err.value) and "'stdout' or 'file'" in str(err.value), str(err.value)


def test_a_relative_file_path_is_relative_to_the_config(tmp_path: Path):
    raw = {"tokens": {"secret": "x" * 40}, "users_file": "users.yaml", "audit": {"sink": "file", "path": "a.jsonl"}}
    assert parse_config(raw, tmp_path).audit.path == tmp_path / "a.jsonl"


def test_audit_is_on_by_default_on_stdout(tmp_path: Path):
    config = parse_config({"tokens": {"secret": "x" * 40}, "users_file": "users.yaml"}, tmp_path)
    assert config.audit.enabled and config.audit.sink == "stdout" and config.audit.webhook is None


def test_nginx_second_ask_is_marked_and_drops_the_clients_query(tmp_path: Path):
    config = parse_config({"tokens": {"secret": "x" * 40}, "users_file": "users.yaml",
                           "decision": {"front": "nginx"}}, tmp_path)
    site = render("nginx", config)["nginx.conf"]
    refusal = site.split("location @gateway_refusal", 1)[1].split("}", 1)[0]
    assert "rewrite ^ /auth/decide?reask? break;" in refusal
    first = site.split("location = /_gateway_decide", 1)[1].split("}", 1)[0]
    assert "reask" not in first


def test_changing_audit_needs_a_restart(tmp_path: Path):
    base = {"tokens": {"secret": "x" * 40}, "users_file": "users.yaml"}
    running = parse_config(base, tmp_path)
    moved = parse_config({**base, "audit": {"sink": "file", "path": "a.jsonl"}}, tmp_path)
    assert restart_only_changes(running, moved) == ["audit: changing where audit events go needs a restart"]
    assert restart_only_changes(running, parse_config(base, tmp_path)) == []
