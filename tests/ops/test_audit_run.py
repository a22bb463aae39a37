"""Audit events from a real `gateway run`: a file sink written even at --log-level warning, its lines never in the
process's own output (access and app logs), a reload recorded, no token or password in the file; and Debian's nginx
running the generated decision-mode config, which asks the gateway twice about every refusal, leaving one event.
"""
from __future__ import annotations

import json
import signal
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from gateway.config import load_config
from tests.conftest import PASSWORDS
from tests.support.audit import file_events
from tests.support.fronts import nginx_front
from tests.support.processes import BOUND, GatewayProcesses, example_upstream, raw_request


def _post(port: int, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", json.dumps(body).encode(),
                                     {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=15) as resp:
            return resp.status, json.load(resp)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


def _wait_for(check: Any, what: str) -> None:
    deadline = time.monotonic() + BOUND
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_gateway_run_writes_its_file_sink_apart_from_its_logs(gateway_process: GatewayProcesses, users_file: Path,
                                                              tmp_path: Path):
    path = tmp_path / "audit" / "events.jsonl"
    path.parent.mkdir()
    app = example_upstream(tmp_path, "echo").start()
    try:
        raw = {"tokens": {"secret": "s" * 48, "issuer": "test-gw", "audience": "test-clients"},
               "users_file": str(users_file), "audit": {"sink": "file", "path": str(path)},
               "routes": [{"name": "admin", "prefix": "/admin", "upstream": app.url,
                           "require": {"roles_any": ["admin"]}}]}
        port = gateway_process(raw, "--log-level", "warning")
        status, pair = _post(port, "/auth/token", {"username": "bob", "password": PASSWORDS["bob"]})
        assert status == 200
        assert _post(port, "/auth/token", {"username": "bob", "password": "wrong"})[0] == 401
        refused = raw_request(port, "GET", "/admin/x", [("Authorization", f"Bearer {pair['access']}")])
        assert refused.status == 403
        gateway_process.procs[port].send_signal(signal.SIGHUP)
        _wait_for(lambda: any(e["event"] == "config.reloaded" for e in file_events(path)), "the reload's event")
        events = file_events(path)
        assert [e["event"] for e in events] == ["login.succeeded", "login.failed", "credential.refused",
                                                "config.reloaded"]
        assert events[2]["request_id"] == refused.headers["X-Request-Id"] and events[2]["subject"] == "bob"
        output = gateway_process.log(port)
        assert '"event"' not in output and "login.succeeded" not in output  # not in the access or app log
        written = path.read_text()
        assert not [s for s in (pair["access"], pair["refresh"], PASSWORDS["bob"]) if s in written]
    finally:
        app.stop()


def test_nginx_asking_twice_about_a_refusal_leaves_one_event(users_file: Path, tmp_path: Path):
    path = tmp_path / "audit.jsonl"
    app = example_upstream(tmp_path, "echo").start()
    processes = GatewayProcesses(tmp_path)
    front = None
    try:
        port = processes({
            "tokens": {"secret": "s" * 48, "issuer": "test-gw", "audience": "test-clients"},
            "users_file": str(users_file), "trusted_proxies": ["127.0.0.1"],
            "decision": {"front": "nginx"}, "audit": {"sink": "file", "path": str(path)},
            "routes": [{"name": "admin", "prefix": "/admin", "upstream": app.url, "require": {"roles_any": ["admin"]}},
                       {"name": "api", "prefix": "/api", "upstream": app.url}],
        })
        front = nginx_front(tmp_path, load_config(processes.config_path(port)), port, app.port)
        status, bob = _post(front.port, "/auth/token", {"username": "bob", "password": PASSWORDS["bob"]})
        assert status == 200
        asks = processes.log(port).count('"/auth/decide')
        reply = raw_request(front.port, "GET", "/admin/x", [("Authorization", f"Bearer {bob['access']}")], "app.example")
        assert reply.status == 403 and reply.json()["code"] == "permission_denied"  # the gateway's own answer
        _wait_for(lambda: processes.log(port).count('"/auth/decide') >= asks + 2, "both asks in the access log")
        # the client's own "?reask" reaches neither ask's query: still one event for its refusal
        sneaky = raw_request(front.port, "GET", "/api/x?reask", [("Authorization", "Bearer not.a.token")], "app.example")
        assert sneaky.status == 401
        _wait_for(lambda: processes.log(port).count('"/auth/decide') >= asks + 4, "both asks in the access log")
        assert raw_request(front.port, "GET", "/api/x", [], "app.example").status == 401  # anonymous: none
        events = [e for e in file_events(path) if e["event"] == "credential.refused"]
        assert [(e["subject"], e["reason"], e["route"]) for e in events] == [
            ("bob", "insufficient", "admin"), (None, "invalid", "api")]
        assert {e["client"] for e in events} == {"127.0.0.1"}
    except FileNotFoundError as exc:  # pragma: no cover - nginx missing is reported by nginx_front itself
        pytest.fail(str(exc))
    finally:
        if front is not None:
            front.stop()
        processes.stop_all()
        app.stop()
