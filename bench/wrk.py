"""Running wrk and reading its report.

wrk is a closed-loop generator: each connection sends its next request when
the previous answer arrives, so at concurrency c the latency is roughly
c / RPS once the target saturates.  That is why the suite also has a paced
run (``paced.lua``) that measures latency below saturation.
"""
from __future__ import annotations

import os
import re
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["WrkResult", "run_wrk", "parse_wrk", "LUA_DIR"]

LUA_DIR = Path(__file__).resolve().parent / "lua"
_UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}
_TIME = r"([\d.]+)(us|ms|s|m|h)"


@dataclass
class WrkResult:
    """One wrk run; latencies in milliseconds."""

    rps: float
    requests: int
    seconds: float
    p50_ms: float
    p75_ms: float
    p90_ms: float
    p99_ms: float
    non_2xx: int
    socket_errors: int
    codes: dict[str, int] = field(default_factory=dict)  # from scripts that count answers
    cpu_us: float | None = None  # CPU time of the target's process trees during the run, per request (µs)

    @property
    def ok(self) -> bool:
        return self.non_2xx == 0 and self.socket_errors == 0 and self.requests > 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _ms(value: str, unit: str) -> float:
    return float(value) * _UNIT_MS[unit]


def parse_wrk(text: str) -> WrkResult:
    """Parse wrk's ``--latency`` report; raises ValueError if the report is incomplete."""
    pct = {int(p): _ms(v, u) for p, v, u in re.findall(r"^\s+(\d+)%\s+" + _TIME, text, re.M)}
    done = re.search(r"(\d+) requests in " + _TIME, text)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    if not (done and rps and {50, 75, 90, 99} <= pct.keys()):
        raise ValueError(f"incomplete wrk report:\n{text}")
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    return WrkResult(
        rps=float(rps.group(1)), requests=int(done.group(1)),
        seconds=_ms(done.group(2), done.group(3)) / 1000,
        p50_ms=pct[50], p75_ms=pct[75], p90_ms=pct[90], p99_ms=pct[99],
        non_2xx=int(non2xx.group(1)) if non2xx else 0,
        socket_errors=sum(map(int, sock.groups())) if sock else 0,
        codes={k: int(n) for k, n in re.findall(r"^BENCH\t(.+?)\t(\d+)$", text, re.M)},
    )


def run_wrk(url: str, connections: int, seconds: float, script: str | None = "bearer.lua",
            env: dict[str, str] | None = None, threads: int = 1) -> WrkResult:
    """Run wrk for ``seconds`` (hard-killed 30 s later if it hangs) and parse its report."""
    threads = max(1, min(threads, connections))
    argv = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds:g}s", "--timeout", "10s", "--latency"]
    argv += ["-s", str(LUA_DIR / script), url] if script else [url]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30,
                          env={**os.environ, **(env or {})})
    if proc.returncode != 0:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {proc.stderr}\n{proc.stdout}")
    return parse_wrk(proc.stdout)
