"""`gateway check` and second factors: configuration errors with their location, and the warning when a requirement
covers the users of a legacy dialect (whose frontends refresh and retry on a 401)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import ROOT, SECRET

KEY = "credentials-sealing-key-0123456789-abcdef"


def check(tmp_path: Path, users_file: Path, **extra: Any) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "gateway.yaml"
    raw = {"tokens": {"secret": SECRET}, "users_file": str(users_file),
           "routes": [{"name": "api", "prefix": "/api", "upstream": "http://127.0.0.1:9"}], **extra}
    path.write_text(yaml.safe_dump(raw))
    return subprocess.run([sys.executable, "-m", "gateway", "check", str(path)], capture_output=True, text=True, cwd=ROOT,
                          timeout=60)


def test_a_second_factor_needs_a_credentials_store_and_a_long_key(tmp_path: Path, users_file: Path) -> None:
    result = check(tmp_path, users_file, second_factor={"required": "everyone"})
    assert result.returncode == 1 and "second_factor: needs a credentials store" in result.stderr
    result = check(tmp_path, users_file, credentials={"url": "redis://x", "keys": [{"id": "k", "secret": "short"}]})
    assert result.returncode == 1
    assert "credentials.url" in result.stderr and "'redis' is not a database URL" in result.stderr
    assert "credentials.keys[0].secret" in result.stderr and "at least 32 bytes" in result.stderr


def test_check_warns_when_a_requirement_covers_a_legacy_dialect(tmp_path: Path, users_file: Path) -> None:
    store = {"url": f"sqlite:///{tmp_path / 'c.db'}", "keys": [{"id": "k1", "secret": KEY}]}
    quiet = check(tmp_path, users_file, credentials=store, second_factor={"roles": ["admin"]})
    assert quiet.returncode == 0 and "warning" not in quiet.stderr
    routes = [{"name": "pay", "prefix": "/pay", "upstream": "http://127.0.0.1:9", "errors": "simplejwt",
               "require": {"amr_any": ["otp"]}}]
    loud = check(tmp_path, users_file, credentials=store, second_factor={"roles": ["admin"]},
                 compat={"profiles": [{"profile": "simplejwt"}]}, routes=routes)
    assert loud.returncode == 0, loud.stderr
    assert ("warning: compat.profiles[0] (simplejwt): users with roles ['admin'] need a second factor at login, but this "
            "dialect's frontends do not know second_factor_required") in loud.stderr
    assert "warning: routes[0] (pay): a step-up requirement answers 401 insufficient_user_authentication to clients of " \
           "the simplejwt dialect" in loud.stderr


def test_check_warns_when_a_providers_users_can_never_meet_a_level(tmp_path: Path, users_file: Path) -> None:
    provider = {"issuer": "https://sso.example.com", "client_id": "gw", "client_secret": "s3cret"}
    routes = [{"name": "pay", "prefix": "/pay", "upstream": "http://127.0.0.1:9", "login": "corp", "require": {"acr": "mfa"}}]
    loud = check(tmp_path, users_file, public_url="https://gw.example.com", oidc={"providers": {"corp": provider}}, routes=routes)
    assert loud.returncode == 0, loud.stderr
    assert ("warning: routes[0] (pay): its users sign in at corp, whose amr is not trusted "
            "(oidc.providers.corp.trust_authentication)") in loud.stderr
    trusted = {**provider, "trust_authentication": True}
    quiet = check(tmp_path, users_file, public_url="https://gw.example.com", oidc={"providers": {"corp": trusted}}, routes=routes)
    assert quiet.returncode == 0 and "warning" not in quiet.stderr, quiet.stderr


def test_webauthn_needs_a_public_url_with_a_domain_name(tmp_path: Path, users_file: Path) -> None:
    store = {"url": f"sqlite:///{tmp_path / 'c.db'}", "keys": [{"id": "k1", "secret": KEY}]}
    factor = {"webauthn": {"passkey_login": True}}
    missing = check(tmp_path, users_file, credentials=store, second_factor=factor)
    assert missing.returncode == 1 and "public_url: required with second_factor.webauthn" in missing.stderr
    address = check(tmp_path, users_file, credentials=store, second_factor=factor, public_url="https://127.0.0.1:8443")
    assert address.returncode == 1 and "'https://127.0.0.1:8443' has an IP address as its host" in address.stderr
    fine = check(tmp_path, users_file, credentials=store, second_factor=factor, public_url="https://localhost:8443")
    assert fine.returncode == 0, fine.stderr
    weak = check(tmp_path, users_file, credentials=store, public_url="https://localhost:8443",
                 second_factor={"webauthn": {"passkey_login": True, "user_verification": "preferred"}})
    assert weak.returncode == 1 and "passkey_login: needs user_verification: required" in weak.stderr
    model = check(tmp_path, users_file, credentials=store, public_url="https://localhost:8443",
                  second_factor={"webauthn": {"aaguids": ["ABC"]}})
    assert model.returncode == 1 and "second_factor.webauthn.aaguids: 'ABC' is not an AAGUID" in model.stderr


def test_check_warns_about_a_grace_period_nobody_uses_and_names_it_for_legacy_dialects(tmp_path: Path, users_file: Path) -> None:
    store = {"url": f"sqlite:///{tmp_path / 'c.db'}", "keys": [{"id": "k1", "secret": KEY}]}
    unused = check(tmp_path, users_file, credentials=store, second_factor={"grace_period": "7d"})
    assert unused.returncode == 0, unused.stderr
    assert "warning: second_factor.grace_period: no user must have a second factor" in unused.stderr
    used = check(tmp_path, users_file, credentials=store, second_factor={"grace_period": "7d", "required": "everyone"},
                 compat={"profiles": [{"profile": "simplejwt"}]})
    assert used.returncode == 0 and "grace_period: no user" not in used.stderr
    assert ("every user needs a second factor at login (once their enrolment grace period is over), but this dialect's "
            "frontends do not know second_factor_required") in used.stderr
