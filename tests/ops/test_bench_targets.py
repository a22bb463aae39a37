"""The benchmark's comparison targets are honest: they refuse what the gateway refuses, and CPU is counted.

A proxy that answered bad tokens with 200, or never verified them, would post a
flattering figure; so the HAProxy ``jwt_verify`` target and nginx ``auth_request``
in front of a gateway run here for real (the bench's own ``Stack``), with the
tokens the flood scenario uses and a few more.
"""
from __future__ import annotations

import base64
import json
import shutil
from collections.abc import Iterator

import pytest

from bench import client
from bench.procs import cpu_seconds
from bench.stack import Stack, Target

pytestmark = [pytest.mark.skipif(not (shutil.which("haproxy") and shutil.which("nginx")),
                                 reason="haproxy and nginx come from scripts/install-test-deps.sh"),
              pytest.mark.serial]  # weighs CPU seconds per request: alone on the machine


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    s = Stack()
    try:
        yield s
    finally:
        s.close()


@pytest.fixture(scope="module")
def upstream(stack: Stack) -> Target:
    return stack.upstream()


def _unsigned(token: str) -> str:
    """The same claims under ``alg: none`` and no signature."""
    head = base64.urlsafe_b64encode(json.dumps({"alg": "none", "typ": "JWT"}).encode()).rstrip(b"=").decode()
    return f"{head}.{token.split('.')[1]}."


def _bad_tokens(stack: Stack, valid: str) -> dict[str, str | None]:
    return {
        "none": None, "garbage": "not-a-jwt.at-all.sorry", "bad signature": client.tamper_signature(valid),
        "expired": client.local_token(stack.secret, lifetime=-120), "alg none": _unsigned(valid),
        "other issuer": client.local_token(stack.secret, iss="someone-else"),
        "other audience": client.local_token(stack.secret, aud="other-clients"),
        "other secret": client.local_token("another-secret-" + "x" * 40),
    }


def test_haproxy_verifies_the_token_and_sets_the_identity(stack: Stack, upstream: Target) -> None:
    haproxy = stack.haproxy(upstream)
    valid = client.local_token(stack.secret)
    client.check_identity(haproxy.api_url, valid, expect_identity=True)  # 200, X-User-Id from the claims
    for name, token in _bad_tokens(stack, valid).items():
        status, _ = client.get_json(haproxy.api_url, token)
        assert status == 401, name


def test_nginx_auth_request_asks_the_gateway_every_time_and_both_are_weighed(stack: Stack, upstream: Target) -> None:
    gateway = stack.gateway("gateway-authreq-test", upstream, None)
    nginx = stack.nginx_auth_request(upstream, gateway)
    assert gateway.proc is not None and gateway.proc.pid in nginx.cpu_pids
    valid = str(client.login(gateway.base)["access"])
    status, _ = client.get_json(nginx.api_url, valid)
    assert status == 200
    for name, token in _bad_tokens(stack, valid).items():
        status, _ = client.get_json(nginx.api_url, token)
        assert status == 401, name
    before = cpu_seconds([gateway.proc.pid])
    for _ in range(200):
        assert client.get_json(nginx.api_url, valid)[0] == 200
    assert cpu_seconds([gateway.proc.pid]) > before  # the gateway worked for nginx's requests, and it shows
