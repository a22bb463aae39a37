"""auth: basic with real curl against a `gateway run` process: `curl -u`, curl's own reading of the Basic challenge
(`--anyauth`), and refusals."""
from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from tests.conftest import PASSWORDS, base_config

pytestmark = pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")


def curl(*args: str) -> tuple[int, dict[str, str], str]:
    """Status, response headers (lowercase names) and body of one curl call."""
    done = subprocess.run(["curl", "-sS", "--max-time", "20", "-D", "-", *args], capture_output=True, text=True,
                          timeout=30, check=True)
    head, _, body = done.stdout.replace("\r\n", "\n").rpartition("\n\n")
    lines = head.split("\n\n")[-1].split("\n")  # the last response (--anyauth makes two)
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return status, headers, body


def test_curl_with_a_user_and_password(gateway_process, upstream_process, users_file):
    routes = [{"name": "dav", "prefix": "/dav", "upstream": upstream_process, "auth": "basic", "basic_realm": "Files",
               "headers": {"X-User-Id": "sub", "X-User-Roles": "roles"}}]
    base = f"http://127.0.0.1:{gateway_process(base_config(upstream_process, users_file, routes=routes))}"

    status, _, body = curl("-u", f"alice:{PASSWORDS['alice']}", f"{base}/dav/notes.txt")
    assert status == 200, body
    seen = json.loads(body)["headers"]
    assert (seen["X-User-Id"], seen["X-User-Roles"]) == ("alice", "admin,user") and "Authorization" not in seen

    status, headers, body = curl(f"{base}/dav/notes.txt")
    assert status == 401 and headers["www-authenticate"] == 'Basic realm="Files", charset="UTF-8"'
    assert json.loads(body)["code"] == "authentication_required"

    status, _, body = curl("--anyauth", "-u", f"bob:{PASSWORDS['bob']}", f"{base}/dav/x")  # asks first, then answers
    assert status == 200 and json.loads(body)["headers"]["X-User-Id"] == "bob"

    for _ in range(2):  # a wrong password, also after alice's pair is cached
        status, headers, body = curl("-u", "alice:wrong-password", f"{base}/dav/x")
        assert status == 401 and json.loads(body)["code"] == "invalid_credentials"
        assert headers["www-authenticate"].startswith('Basic realm="Files"')

    status, _, body = curl("-H", "Authorization: Basic %%%", f"{base}/dav/x")
    assert status == 400 and json.loads(body)["code"] == "bad_request"
