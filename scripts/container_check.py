"""Run the built image the way production does and check it: `make test-container` calls this.

Checks: /healthz answers, a login works, the process runs as the unprivileged user,
the root filesystem is read-only with a writable tmpfs /tmp, the open-files limit is
logged, and SIGTERM ends it cleanly (exit 0, "gateway stopped") within the drain bound.
The container uses the host's network (no NAT needed) on a free port.
"""
from __future__ import annotations

import argparse
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SECRET = "container-test-secret-that-is-long-enough-0123456789"
STOP_BOUND = 30.0  # podman stop's grace: drain_timeout (default 30 s) is never reached by an idle gateway


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def engine_cmd(engine: str, runtime: str | None) -> list[str]:
    return [engine, "--runtime", runtime] if runtime else [engine]


def sh(cmd: list[str], check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, check=check, capture_output=True, text=True)


def healthcheck_command() -> list[str]:
    """The Dockerfile's HEALTHCHECK CMD (exec form), to run inside the container."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    line = next(line for line in text.splitlines() if line.startswith("HEALTHCHECK"))
    return json.loads(line.split(" CMD ", 1)[1])


def wait_http(url: str, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                return resp.status
        except (urllib.error.URLError, ConnectionError, OSError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--engine", default="podman")
    parser.add_argument("--runtime", default=None)
    parser.add_argument("--image", required=True)
    parser.add_argument("--ulimit", action="append", default=[])
    args = parser.parse_args()
    engine = engine_cmd(args.engine, args.runtime)
    port = free_port()
    name = f"jwt-gateway-check-{port}"
    results: list[tuple[str, bool, str]] = []

    def check(what: str, ok: bool, detail: str = "") -> None:
        results.append((what, ok, detail))
        print(f"{'ok  ' if ok else 'FAIL'} {what}{': ' + detail if detail else ''}", flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        etc = Path(tmp) / "gateway"
        etc.mkdir()
        shutil.copy(ROOT / "config/example.yaml", etc / "config.yaml")
        shutil.copy(ROOT / "config/users.yaml", etc / "users.yaml")
        for f in etc.iterdir():
            f.chmod(0o644)
        etc.chmod(0o755)
        ulimits = [f"--ulimit={u}" for u in args.ulimit]
        run = sh([*engine, "run", "-d", "--name", name, "--network", "host", "--read-only", "--tmpfs", "/tmp",
                  *ulimits, "-e", f"GATEWAY_SECRET={SECRET}", "-e", f"GATEWAY_PORT={port}",
                  "-v", f"{etc}:/etc/gateway:ro", args.image], check=False)
        check("container starts", run.returncode == 0, run.stderr.strip()[-300:] if run.returncode else "")
        if run.returncode != 0:
            return 1
        try:
            base = f"http://127.0.0.1:{port}"
            try:
                status = wait_http(base + "/healthz", 60)
            except OSError as exc:
                status = 0
                print(sh([*engine, "logs", name], check=False).stderr[-2000:])
                check("/healthz", False, str(exc))
            else:
                check("/healthz answers 200", status == 200, str(status))
            body = json.dumps({"username": "alice", "password": "alice-password"}).encode()
            request = urllib.request.Request(base + "/auth/token", data=body, headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(request, timeout=10) as resp:
                    pair = json.loads(resp.read())
                check("login answers a token pair", resp.status == 200 and "access" in pair and "refresh" in pair)
            except (urllib.error.URLError, OSError) as exc:
                check("login answers a token pair", False, str(exc))
            health = sh([*engine, "exec", name, *healthcheck_command()], check=False)
            check("the image's HEALTHCHECK command passes", health.returncode == 0, health.stderr.strip()[-200:])
            uid = sh([*engine, "exec", name, "id", "-u"], check=False).stdout.strip()
            check("runs as the unprivileged user 10001", uid == "10001", uid)
            root = sh([*engine, "exec", name, "sh", "-c", "touch /probe"], check=False)
            check("root filesystem is read-only", root.returncode != 0, root.stderr.strip())
            tmpfs = sh([*engine, "exec", name, "sh", "-c", "touch /tmp/probe && rm /tmp/probe"], check=False)
            check("/tmp is a writable tmpfs", tmpfs.returncode == 0, tmpfs.stderr.strip())
            started = time.monotonic()
            stop = sh([*engine, "stop", "-t", str(int(STOP_BOUND)), name], check=False)
            took = time.monotonic() - started
            code = sh([*engine, "inspect", name, "--format", "{{.State.ExitCode}}"], check=False).stdout.strip()
            logs = sh([*engine, "logs", name], check=False)
            text = logs.stdout + logs.stderr
            check("SIGTERM: exit code 0", stop.returncode == 0 and code == "0", f"exit {code} after {took:.1f}s")
            check("SIGTERM: clean shutdown logged", "gateway stopped" in text and "Traceback" not in text)
            check("open files limit logged", "open files limit (RLIMIT_NOFILE)" in text,
                  next((line for line in text.splitlines() if "RLIMIT_NOFILE" in line), ""))
        finally:
            sh([*engine, "rm", "-f", name], check=False)
    failed = [what for what, ok, _ in results if not ok]
    print(f"{len(results) - len(failed)}/{len(results)} checks passed" + (f"; failed: {failed}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
