"""Where the gateway's time goes: py-spy samples while wrk drives it.

py-spy (``pip install py-spy``) samples the running gateway from outside, so
the gateway needs no change; ``--nonblocking`` keeps it from pausing the
process at each sample.  Samples are collapsed stacks aggregated by
function; the report lists the functions with the most self time and the
share of busy samples spent under each broad activity (JWT, Redis, access
log, upstream client, ...), which is what tells which lever to pull.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

__all__ = ["record", "summarize", "CATEGORIES", "INCLUSIVE"]

# Activity -> regex over a frame "function (module/path.py:line)".  A sample goes to the
# activity of its innermost matching frame (walking from the leaf outwards), so the
# shares add up to 100%: json decoding inside PyJWT counts as JWT, a socket write
# issued by the redis client counts as socket I/O.
CATEGORIES: dict[str, str] = {
    "JWT verification (PyJWT, gateway/auth/tokens.py)": r"\(jwt/|\(gateway/auth/tokens\.py",
    "revocation check (redis-py, gateway/stores)": r"\(redis/|\(gateway/stores/",
    "access log (logging, gateway/observe/access_log.py)": r"\(gateway/observe/access_log\.py|\(logging/",
    "metrics (prometheus_client, gateway/observe/metrics.py)": r"\(prometheus_client/|\(gateway/observe/metrics\.py",
    "route matching (gateway/routing.py, target.py)": r"\(gateway/routing\.py|\(gateway/target\.py",
    "header rewrite (gateway/upstream/headers.py)": r"\(gateway/upstream/headers\.py|^request_id ",
    "upstream client (gateway/upstream/client, pool, connection; aiohttp client)":
        r"\(gateway/upstream/(client|pool|connection)\.py|\(httptools/|\(aiohttp/client|\(aiohttp/connector"
        r"|^Upstream\.forward ",
    "response relay (_relay, StreamResponse)": r"^_relay |^_response_headers |\(aiohttp/web_response",
    "aiohttp server (parsing, dispatch, writing)": r"\(aiohttp/",
    "gateway's other per-request code (middleware, pipeline, credentials, limits)": r"\(gateway/",
    "prototype server (bench/protocol_prototype.py: parsing callbacks, answer assembly, writes)":
        r"\(bench/protocol_prototype\.py",
    "socket I/O (asyncio transports)": r"\(asyncio/selector_events\.py",
    "event loop (asyncio, selectors)": r"\(asyncio/|\(selectors\.py",
}
# Inclusive shares (a sample counts for every matching frame on its stack): the figures the
# issue quotes as "counted inclusively".
INCLUSIVE: dict[str, str] = {
    "aiohttp request handling (RequestHandler._handle_request)": r"^RequestHandler\._handle_request ",
    "middleware: errors, metrics, access log (errors_and_access_log)": r"^errors_and_access_log ",
    "metrics + access log (_observe)": r"^_observe \(gateway/middleware",
    "answer headers (answer_headers)": r"^answer_headers ",
    "dispatch (routing, admission, forwarding)": r"^dispatch \(gateway/pipeline",
    "admission: credentials, policy, header rewrite (admit)": r"^admit \(gateway/pipeline",
    "upstream forward (Upstream.forward)": r"^Upstream\.forward ",
    "response relay (_relay)": r"^_relay ",
    "prepare hooks (on_response_prepare)": r"^Request\._prepare_hook ",
}
_LINE = re.compile(r":\d+\)$")


def py_spy() -> str | None:
    """The py-spy binary next to the venv's python, or on PATH."""
    from .stack import ROOT
    local = ROOT / ".venv" / "bin" / "py-spy"
    return str(local) if local.exists() else shutil.which("py-spy")


def record(pid: int, seconds: float, out: Path, rate: int = 200) -> subprocess.Popen[bytes]:
    """Start sampling ``pid`` (and its worker subprocesses) for ``seconds`` into collapsed-stack ``out``."""
    exe = py_spy()
    if exe is None:
        raise RuntimeError("py-spy not installed (.venv/bin/pip install py-spy)")
    argv = [exe, "record", "--pid", str(pid), "--duration", str(int(seconds)), "--rate", str(rate),
            "--format", "raw", "--function", "--nonblocking", "--subprocesses", "--output", str(out)]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(0.5)  # let it attach before the load starts
    return proc


def _frames(stack: str) -> list[str]:
    """Frames root-first, line numbers dropped, py-spy's per-process pseudo-frame removed."""
    return [_LINE.sub(")", f.strip()) for f in stack.split(";") if f.strip() and not f.startswith("process ")]


def _activity(frames: list[str], patterns: dict[str, re.Pattern[str]]) -> str:
    for frame in reversed(frames):
        for name, rx in patterns.items():
            if rx.search(frame):
                return name
    return "other (native, startup)"


def summarize(raw: Path, top: int = 15) -> dict[str, Any]:
    """Self-time leaders and per-activity shares of the busy samples in a collapsed-stack file."""
    self_time: Counter[str] = Counter()
    cats: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    patterns = {name: re.compile(rx) for name, rx in CATEGORIES.items()}
    spans = {name: re.compile(rx) for name, rx in INCLUSIVE.items()}
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n, frames = int(count), _frames(stack)
        total += n
        self_time[frames[-1] if frames else "(no Python frame)"] += n
        cats[_activity(frames, patterns)] += n
        for name, rx in spans.items():
            if any(rx.search(f) for f in frames):
                inclusive[name] += n
    pct = (lambda n: 100.0 * n / total) if total else (lambda n: 0.0)
    return {"samples": total,
            "self_top": [{"function": f, "pct": pct(n)} for f, n in self_time.most_common(top)],
            "activities": {name: pct(n) for name, n in cats.most_common()},
            "inclusive": {name: pct(inclusive[name]) for name in INCLUSIVE}}
