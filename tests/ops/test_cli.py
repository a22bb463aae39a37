"""The gateway command: check, hash-password, and refusing to start on a bad file."""
from __future__ import annotations

import subprocess
import sys

import yaml
from argon2 import PasswordHasher

from tests.conftest import ROOT, SECRET


def gateway(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway", *args], input=stdin, capture_output=True, text=True, cwd=ROOT, timeout=60)


def test_check_the_example():
    result = gateway("check", "config/example.yaml")
    assert result.returncode == 0 and "OK (3 routes, 2 users" in result.stdout


def test_check_prints_every_problem_and_fails(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({
        "tokens": {"secret": "short"},
        "users_file": "missing.yaml",
        "routes": [{"prefix": "/a", "upstream": "http://a"}, {"prefix": "/b", "upstream": "http://b"},
                   {"prefix": "/c", "upstream": "not a url"}],
    }))
    result = gateway("check", str(path))
    assert result.returncode == 1
    assert "tokens.secret: HS256 needs a secret of at least 32 bytes" in result.stderr
    assert "routes[2].upstream: not an absolute URL: add the scheme, e.g. http://not a url (got 'not a url')" in result.stderr


def test_check_warns_about_shadowed_routes(tmp_path, users_file):
    path = tmp_path / "shadow.yaml"
    path.write_text(yaml.safe_dump({
        "tokens": {"secret": SECRET}, "users_file": str(users_file),
        "routes": [{"prefix": "/api", "upstream": "http://a"}, {"prefix": "/api/v2", "upstream": "http://b"}],
    }))
    result = gateway("check", str(path))
    assert result.returncode == 0 and "warning: routes[1] (routes[1]): shadowed by earlier route routes[0]" in result.stderr


def test_run_refuses_a_bad_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("tokens: {secret: x}\n")
    result = gateway("run", "--config", str(path))
    assert result.returncode == 1 and "the gateway will not start" in result.stderr


def test_hash_password_from_stdin():
    result = gateway("hash-password", stdin="s3cret\n")
    digest = result.stdout.strip()
    assert result.returncode == 0 and digest.startswith("$argon2id$")
    assert PasswordHasher().verify(digest, "s3cret")
    assert "s3cret" not in result.stdout + result.stderr


def test_version_log_level_and_counts():
    version = gateway("--version")
    assert version.returncode == 0 and version.stdout.startswith("gateway 0.")
    bad = gateway("run", "--log-level", "verbose")
    assert bad.returncode == 2 and "invalid choice: 'VERBOSE'" in bad.stderr and "Traceback" not in bad.stderr
