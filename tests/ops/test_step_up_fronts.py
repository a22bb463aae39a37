"""Step-up in decision mode through each real front proxy (nginx, nginx with its decision cache, Caddy, Traefik, HAProxy)
running the config `gateway decision-config` generates, in cookie mode: a navigation to a route that needs a second
factor is the gateway's 302 to the step-up page, fetch gets the 401 JSON with step_up_url and the RFC 9470 challenge, and
after a step-up through the front the same navigation reaches the app."""
from __future__ import annotations

import http.cookies
import json
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterator

import pyotp
import pytest

from gateway.config import load_config
from tests.conftest import PASSWORDS
from tests.ops.test_decision_fronts import LAUNCHERS
from tests.support.jwt_tools import make_key
from tests.support.processes import GatewayProcesses, ServerProcess, example_upstream, raw_request

NAVIGATE = [("Sec-Fetch-Mode", "navigate"), ("Accept", "text/html")]


class Front:
    def __init__(self, port: int) -> None:
        self.port = port
        self.jar: dict[str, str] = {}

    def cookie(self) -> list[tuple[str, str]]:
        return [("Cookie", "; ".join(f"{k}={v}" for k, v in self.jar.items()))] if self.jar else []

    def post(self, path: str, body: dict, headers: dict[str, str] | None = None) -> tuple[int, dict]:
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", json.dumps(body).encode(),
                                         {"Content-Type": "application/json", "Host": "app.example",
                                          **dict(self.cookie()), **(headers or {})})
        try:
            with urllib.request.urlopen(request, timeout=15) as resp:
                self._keep(resp.headers.get_all("Set-Cookie") or [])
                return resp.status, json.load(resp)
        except urllib.error.HTTPError as exc:
            return exc.code, json.load(exc)

    def _keep(self, lines: list[str]) -> None:
        for line in lines:
            parsed = http.cookies.SimpleCookie(line)
            self.jar.update({name: morsel.value for name, morsel in parsed.items()})


@pytest.fixture(scope="module", params=sorted(LAUNCHERS))
def front(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, users_file: Path,
          redis_server) -> Iterator[Front]:
    name = request.param
    tmp = tmp_path_factory.mktemp(f"step-up-{name}")
    app = example_upstream(tmp, "echo").start()
    processes = GatewayProcesses(tmp)
    proxy: ServerProcess | None = None
    try:
        port = processes({
            "tokens": {"keys": [make_key(tmp, "ES256", "gw-es").spec(active=True)], "issuer": "t", "audience": "t"},
            "users_file": str(users_file),
            "store": {"backend": "redis", "url": redis_server.url, "prefix": f"step-up-{name}:"},
            "trust_forwarded_headers": True,
            "cookies": {"enabled": True, "secure": False, "csrf_secret": "c" * 40},
            "decision": {"front": name.partition("-")[0], "max_age": "2s"},
            "credentials": {"url": f"sqlite:///{tmp / 'credentials.db'}", "keys": [{"id": "k1", "secret": "s" * 40}]},
            "second_factor": {},
            "routes": [
                {"name": "pay", "prefix": "/pay", "upstream": app.url, "require": {"amr_any": ["otp"]},
                 "headers": {"X-User-Id": "sub"}},
                {"name": "public", "prefix": "/", "upstream": app.url, "auth": "none"},
            ],
        })
        proxy = LAUNCHERS[name](tmp, load_config(processes.config_path(port)), port, app.port)
        yield Front(proxy.port)
    finally:
        if proxy is not None:
            proxy.stop()
        processes.stop_all()
        app.stop()


def test_a_navigation_steps_up_through_the_front_and_comes_back(front: Front) -> None:
    status, _ = front.post("/auth/token", {"username": "bob", "password": PASSWORDS["bob"]})
    assert status == 200 and "gw_access" in front.jar
    csrf = {"X-CSRF-Token": front.jar["gw_csrf"]}
    status, started = front.post("/auth/mfa/totp", {}, csrf)
    assert status == 200, started
    otp = pyotp.TOTP(started["secret"])
    status, _ = front.post("/auth/mfa/totp/confirm", {"code": otp.at(time.time() - 30)}, csrf)
    assert status == 200
    nav = raw_request(front.port, "GET", "/pay/x?y=1", NAVIGATE + front.cookie(), "app.example")
    assert nav.status == 302, (nav.status, nav.body[:300])
    # absolute on the client's origin: Traefik would resolve a relative Location against the gateway's address
    assert nav.headers["Location"] == "http://app.example/auth/mfa/step-up?next=/pay/x%3Fy%3D1", dict(nav.headers)
    assert nav.headers.get("X-Upstream") is None
    fetch = raw_request(front.port, "GET", "/pay/x", [("Accept", "application/json")] + front.cookie(), "app.example")
    assert fetch.status == 401, (fetch.status, fetch.body[:300])
    assert fetch.json()["step_up_url"] == "/auth/mfa/step-up?next=/pay/x"
    assert 'error="insufficient_user_authentication"' in fetch.headers["WWW-Authenticate"]
    page = raw_request(front.port, "GET", nav.headers["Location"].removeprefix("http://app.example"), NAVIGATE, "app.example")
    assert page.status == 200 and "default-src 'none'" in page.headers["Content-Security-Policy"]
    status, body = front.post("/auth/mfa/step-up", {"code": otp.now()}, {"X-CSRF-Token": front.jar["gw_csrf"]})
    assert status == 200, body
    back = raw_request(front.port, "GET", "/pay/x?y=1", NAVIGATE + front.cookie(), "app.example")
    assert back.status == 200 and back.json()["headers"]["X-User-Id"] == "bob", (back.status, back.body[:300])
