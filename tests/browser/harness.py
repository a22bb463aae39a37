"""Helpers for the browser tests: run a page in Debian's headless Chromium and get its result.

The page under test sets ``window.__result`` (any JSON value); ``run.mjs`` waits for it, prints it
as one JSON line, and these helpers parse that line.

    from harness import ensure_npm_ci, run_page, run_page_async
    ensure_npm_ci()                       # installs playwright-core + axios from package-lock.json
    result = run_page("http://127.0.0.1:8123/page.html")

Use ``run_page_async`` from ``async`` tests whose page is served by a server running on the same
event loop (a blocking ``subprocess.run`` would starve that server).
"""
from __future__ import annotations

import asyncio
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from tests.support.ports import free_port  # noqa: F401 (the tests' one allocator, re-exported for the browser tests)

BROWSER_DIR = Path(__file__).resolve().parent
REPO_ROOT = BROWSER_DIR.parent.parent
RUNNER = BROWSER_DIR / "run.mjs"
NODE_MODULES = BROWSER_DIR / "node_modules"
CLIENT_JS = REPO_ROOT / "gateway" / "static" / "client.js"
# axios builds for pages: UMD (defines window.axios) and ES module.
AXIOS_UMD = NODE_MODULES / "axios" / "dist" / "axios.min.js"
AXIOS_ESM = NODE_MODULES / "axios" / "dist" / "esm" / "axios.min.js"

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
NODE = os.environ.get("NODE", "node")
NPM = os.environ.get("NPM", "npm")
_STAMP = NODE_MODULES / ".gateway-npm-ci-stamp"


class HarnessError(RuntimeError):
    """The browser harness could not produce a result."""


class BrowserRunError(HarnessError):
    def __init__(self, returncode: int, stdout: str, stderr: str, url: str):
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        self.url = url
        reason = {3: "timed out waiting for window.__result", 4: "uncaught error in the page",
                  5: "browser or navigation failure", 2: "bad usage"}.get(returncode, "failed")
        super().__init__(
            f"run.mjs {reason} (exit {returncode}) for {url}\n--- stdout ---\n{stdout[-4000:]}"
            f"\n--- stderr ---\n{stderr[-8000:]}"
        )

    @property
    def result(self) -> Any:
        """The page's result when it set one before failing (e.g. exit 4), else None."""
        try:
            return _last_json_line(self.stdout)
        except HarnessError:
            return None


def missing_prerequisites() -> list[str]:
    """What is missing to run browser tests (empty when all is there)."""
    missing = []
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        missing.append(f"chromium at {CHROMIUM} (apt-get install -y chromium)")
    if shutil.which(NODE) is None:
        missing.append("node (apt-get install -y nodejs npm)")
    if shutil.which(NPM) is None and not (NODE_MODULES / "playwright-core").is_dir():
        missing.append("npm")
    return missing


def _lock_digest() -> str:
    h = hashlib.sha256()
    for name in ("package.json", "package-lock.json"):
        h.update((BROWSER_DIR / name).read_bytes())
    return h.hexdigest()


def ensure_npm_ci(force: bool = False, timeout: float = 600) -> Path:
    """Run ``npm ci`` in tests/browser unless node_modules already matches package-lock.json.

    Safe to call from several processes at once (file lock). Returns the node_modules path.
    """
    digest = _lock_digest()
    # Lock outside the work tree (never unlinked: unlinking would let two processes hold
    # locks on different inodes).
    lock_path = Path(tempfile.gettempdir()) / (
        "gateway-npm-ci-" + hashlib.sha256(str(BROWSER_DIR).encode()).hexdigest()[:12] + ".lock")
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if (
                not force
                and _STAMP.is_file()
                and _STAMP.read_text().strip() == digest
                and (NODE_MODULES / "playwright-core" / "package.json").is_file()
                and (NODE_MODULES / "axios" / "package.json").is_file()
            ):
                return NODE_MODULES
            if shutil.which(NPM) is None:
                raise HarnessError("npm is not installed (apt-get install -y npm)")
            proc = subprocess.run(
                [NPM, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                cwd=BROWSER_DIR, capture_output=True, text=True, timeout=timeout,
            )
            if proc.returncode != 0:
                raise HarnessError(f"npm ci failed (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
            _STAMP.write_text(digest + "\n")
            return NODE_MODULES
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _last_json_line(stdout: str) -> Any:
    for line in reversed(stdout.strip().splitlines()):
        line = line.strip()
        if line:
            try:
                return json.loads(line)
            except json.JSONDecodeError as e:
                raise HarnessError(f"runner printed something that is not JSON: {line[:500]!r}") from e
    raise HarnessError("runner printed no result")


def _runner_cmd(url: str, timeout: float, authenticator: dict | None = None) -> list[str]:
    extra = [] if authenticator is None else ["--virtual-authenticator", json.dumps(authenticator)]
    return [NODE, str(RUNNER), url, "--timeout", str(int(timeout * 1000)), "--chromium", CHROMIUM, *extra]


def run_page(url: str, timeout: float = 30.0) -> Any:
    """Open ``url`` in headless Chromium, wait for ``window.__result``, return it parsed.

    Raises BrowserRunError on timeout, uncaught page errors or browser failure.
    Only for pages served by another thread or process (this call blocks).
    """
    try:
        proc = subprocess.run(_runner_cmd(url, timeout), cwd=BROWSER_DIR, capture_output=True,
                              text=True, timeout=timeout + 60)
    except subprocess.TimeoutExpired as e:
        raise BrowserRunError(-1, e.stdout or "", e.stderr or "", url) from e
    if proc.returncode != 0:
        raise BrowserRunError(proc.returncode, proc.stdout, proc.stderr, url)
    return _last_json_line(proc.stdout)


async def run_page_async(url: str, timeout: float = 30.0, authenticator: dict | None = None) -> Any:
    """Like run_page, without blocking the event loop (for pages served from the same loop).

    ``authenticator``: add a DevTools virtual WebAuthn authenticator first (run.mjs --virtual-authenticator:
    these options over ctap2/internal/resident key/user verification), and give the page ``window.__cdp``.
    """
    proc = await asyncio.create_subprocess_exec(
        *_runner_cmd(url, timeout, authenticator), cwd=BROWSER_DIR,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout + 60)
    except asyncio.TimeoutError:
        proc.kill()
        out, err = await proc.communicate()
        raise BrowserRunError(-1, out.decode(errors="replace"), err.decode(errors="replace"), url) from None
    stdout, stderr = out.decode(errors="replace"), err.decode(errors="replace")
    if proc.returncode != 0:
        raise BrowserRunError(proc.returncode, stdout, stderr, url)
    return _last_json_line(stdout)


async def run_flow_async(steps: list[dict[str, Any]], workdir: Path, step_timeout: float = 30.0,
                         authenticator: dict | None = None) -> dict[str, Any]:
    """Drive one tab through ``steps`` (flow.mjs: goto, click, waitForURL, result, evaluate, ...) and return
    ``{"results", "url", "console"}``; ``authenticator`` as for run_page_async. Raises BrowserRunError on failure."""
    path = workdir / f"steps-{free_port()}.json"
    path.write_text(json.dumps(steps))
    extra = [] if authenticator is None else ["--virtual-authenticator", json.dumps(authenticator)]
    proc = await asyncio.create_subprocess_exec(
        NODE, str(BROWSER_DIR / "flow.mjs"), str(path), "--timeout", str(int(step_timeout * 1000)), *extra,
        cwd=BROWSER_DIR, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), step_timeout * (len(steps) + 3))
    except asyncio.TimeoutError:
        proc.kill()
        out, err = await proc.communicate()
    stdout, stderr = out.decode(errors="replace"), err.decode(errors="replace")
    if proc.returncode != 0:
        raise BrowserRunError(proc.returncode or -1, stdout, stderr, str(path))
    result: dict[str, Any] = _last_json_line(stdout)
    return result


def run_node(script: str | Path, *args: str, timeout: float = 60.0, env: dict | None = None) -> Any:
    """Run a Node script from tests/browser (where node_modules resolves, e.g. axios) and return
    the JSON of its last stdout line. For seed client code run in Node rather than in a page."""
    proc = subprocess.run([NODE, str(script), *args], cwd=BROWSER_DIR, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})
    if proc.returncode != 0:
        raise BrowserRunError(proc.returncode, proc.stdout, proc.stderr, str(script))
    return _last_json_line(proc.stdout)


def wait_for_http(url: str, timeout: float = 20.0, proc: subprocess.Popen | None = None) -> None:
    """Poll ``url`` until it answers anything below 500 (for servers started as subprocesses)."""
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise HarnessError(f"server process exited with {proc.returncode} before answering {url}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status < 500:
                    return
        except urllib.error.HTTPError as e:
            if e.code < 500:
                return
            last = e
        except OSError as e:
            last = e
        time.sleep(0.1)
    raise HarnessError(f"{url} did not answer within {timeout}s: {last}")


async def wait_http(url: str, proc: subprocess.Popen, log: Path, timeout: float = 20.0) -> None:
    """Poll ``url`` until it answers below 500; fail with the log tail if ``proc`` exits or time runs out."""
    deadline = asyncio.get_running_loop().time() + timeout
    async with aiohttp.ClientSession() as session:
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"{proc.args} exited with {proc.returncode}:\n{log.read_text()[-4000:]}")
            try:
                async with session.get(url, timeout=aiohttp.ClientTimeout(total=2)) as r:
                    if r.status < 500:
                        return
            except (aiohttp.ClientError, asyncio.TimeoutError):
                pass
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"{url} did not come up:\n{log.read_text()[-4000:]}")
            await asyncio.sleep(0.1)
