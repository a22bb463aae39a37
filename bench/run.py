"""Benchmark entry point: ``.venv/bin/python -m bench.run [--quick] [...]``.

Starts the upstream, a throwaway Redis, the gateway, nginx and the naive
proxy on free loopback ports, runs the selected scenarios, writes
``bench/results/{results.md,results.json,bench.png}`` and stops everything it
started.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

if __package__ in (None, ""):  # ``python bench/run.py`` as well as ``python -m bench.run``
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    __package__ = "bench"

from bench import client, report, scenarios  # noqa: E402
from bench.scenarios import Bench, Options  # noqa: E402
from bench.stack import ROOT, Stack, Target  # noqa: E402

SCENARIOS: dict[str, Callable[[Bench], dict[str, Any]]] = {
    "headline": scenarios.headline, "steady": scenarios.steady, "latency": scenarios.latency, "refresh": scenarios.refresh_storm,
    "routes": scenarios.routes, "families": scenarios.families, "stream": scenarios.stream,
    "flood": scenarios.flood, "workers": scenarios.workers, "profile": scenarios.profile,
    "revcache": scenarios.revocation_cache,
}
NEEDS_GATEWAY = {"refresh", "routes", "families", "flood", "workers", "revcache"}
# gateway: Redis store, every revocation check asks Redis (the reference of the scenarios below it);
# gateway-memory and gateway-cached (Redis with store.revocation_cache) are the two configurations.
TARGETS = ["direct", "nginx", "haproxy", "naive", "gateway", "gateway-memory", "gateway-cached", "nginx-authreq"]
# Not measured unless named in --targets: bench/protocol_prototype.py, NOT the gateway (issue 12's ceiling).
OPT_IN = ["prototype"]
GATEWAYS = ("gateway-cached", "gateway-memory", "gateway")  # nginx-authreq asks the first of these that runs


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="smoke run: short, small, one round (~2 min)")
    p.add_argument("--duration", type=float, help="seconds per wrk run (default 5, quick 2)")
    p.add_argument("--concurrency", help="comma list of connection counts (default 1,16,64,256)")
    p.add_argument("--rounds", type=int, help="repeats of each comparison (default 3, quick 1)")
    p.add_argument("--scenarios", default=",".join(SCENARIOS),
                   help=f"comma list out of {','.join(SCENARIOS)} (default: all)")
    p.add_argument("--targets", default=",".join(TARGETS), help="comma list out of " + ",".join(TARGETS + OPT_IN))
    p.add_argument("--threads", type=int, help="wrk threads (default 1: the machine has 2 cores)")
    p.add_argument("--families", type=int, help="live refresh families for the Redis scenario (default 1e6)")
    p.add_argument("--stream-mb", type=int, help="MiB streamed through the proxies (default 1024)")
    p.add_argument("--refresh-clients", type=int, help="concurrent refreshing clients (default 256)")
    p.add_argument("--workers", type=int, help="worker count compared with 1 in the workers scenario")
    p.add_argument("--revocation-cache", type=float,
                   help="seconds of store.revocation_cache compared with 0s in the revcache scenario (default 5)")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results", help="results directory")
    p.add_argument("--keep-tmp", action="store_true", help="keep configs and logs of the run")
    return p.parse_args(argv)


def make_options(a: argparse.Namespace) -> Options:
    """Defaults, shrunk by --quick, overridden by explicit flags."""
    o = Options()
    if a.quick:
        o = Options(duration=2, concurrency=[64], rounds=1, warm_up=1, paced_rps=400, refresh_clients=16,
                    refresh_rounds=1, families=50_000, stream_mb=128, big_routes=10_000, headline_rounds=3)
    for name in ("duration", "rounds", "threads", "families", "stream_mb", "refresh_clients", "workers",
                 "revocation_cache"):
        if getattr(a, name) is not None:
            setattr(o, name, getattr(a, name))
    if a.concurrency:
        o.concurrency = [int(c) for c in a.concurrency.split(",")]
    return o


def _version(argv: list[str]) -> str:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        return (proc.stdout + proc.stderr).strip().splitlines()[0]
    except (OSError, IndexError, subprocess.SubprocessError):
        return "?"


def environment() -> dict[str, Any]:
    """What the numbers were measured on, so a reader can judge them."""
    commit = _version(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"])
    return {"date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "host": platform.node(),
            "cpus": len(os.sched_getaffinity(0)), "python": platform.python_version(),
            "kernel": platform.release(), "nginx": _version(["nginx", "-v"]), "wrk": _version(["wrk", "--version"]),
            "commit": commit if len(commit) < 20 else "(no commit)", "argv": sys.argv[1:],
            "loadavg": list(os.getloadavg())}


def start_targets(stack: Stack, names: list[str], redis_port: int | None,
                  revocation_cache: float) -> tuple[Target, dict[str, Target]]:
    """Upstream first, then each selected target in front of it; ``direct`` is the upstream itself."""
    up = stack.upstream()
    targets: dict[str, Target] = {}
    url = f"redis://127.0.0.1:{redis_port}/0"
    for name in sorted(names, key=lambda n: n == "nginx-authreq"):  # nginx-authreq needs a gateway first
        if name == "direct":
            targets[name] = up
        elif name == "nginx":
            targets[name] = stack.nginx(up)
        elif name == "haproxy":
            targets[name] = stack.haproxy(up)
        elif name == "naive":
            targets[name] = stack.naive(up)
        elif name == "prototype":
            targets[name] = stack.prototype(up)
        elif name == "gateway":
            targets[name] = stack.gateway("gateway", up, url)
        elif name == "gateway-memory":
            targets[name] = stack.gateway(name, up, None)
        elif name == "gateway-cached":
            targets[name] = stack.gateway(name, up, url, store_extra={"revocation_cache": f"{revocation_cache:g}s"})
            scenarios.wait_subscribed(targets[name])
        elif name == "nginx-authreq":
            behind = next((targets[g] for g in GATEWAYS if g in targets), None)
            if behind is None:
                raise SystemExit("nginx-authreq needs one of the gateway targets: " + ", ".join(GATEWAYS))
            targets[name] = stack.nginx_auth_request(up, behind)
    return up, {n: targets[n] for n in names}


def get_tokens(stack: Stack, targets: dict[str, Target]) -> tuple[str, dict[str, str]]:
    """A real access token from a gateway's login (a look-alike when benching without one), and each gateway's own.

    A gateway accepts only sessions its store knows, so every gateway target logs in at itself and nginx-authreq
    uses the token of the gateway it asks; the other targets do not check sessions and take the first token."""
    own = {name: str(client.login(t.base)["access"]) for name, t in targets.items() if name in ("gateway", *GATEWAYS)}
    behind = next((g for g in GATEWAYS if g in own), None)
    if "nginx-authreq" in targets and behind is not None:
        own["nginx-authreq"] = own[behind]
    first = next((own[n] for n in ("gateway", *GATEWAYS) if n in own), None)
    return (first if first is not None else client.local_token(stack.secret)), own


def dead_processes(stack: Stack) -> str:
    """Exit codes and log tails of started processes that are no longer running."""
    dead = [p for p in stack.procs if not p.alive()]
    return "".join(f"\n{p.name} exited with {p.popen.returncode}:\n{p.log_tail(15)}" for p in dead)


def run(a: argparse.Namespace) -> dict[str, Any]:
    opts = make_options(a)
    chosen = [s.strip() for s in a.scenarios.split(",") if s.strip()]
    names = [t.strip() for t in a.targets.split(",") if t.strip()]
    unknown = (set(chosen) - set(SCENARIOS)) | (set(names) - set(TARGETS) - set(OPT_IN))
    if unknown:
        raise SystemExit(f"unknown scenario/target: {sorted(unknown)}")
    if "gateway" not in names:
        chosen = [s for s in chosen if s not in NEEDS_GATEWAY]
    if "profile" in chosen and not any(n.startswith("gateway") for n in names):
        chosen.remove("profile")
    for tool in ("wrk", "nginx", "redis-server", "redis-cli") + (("haproxy",) if "haproxy" in names else ()):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} not found: bash scripts/install-bench-deps.sh")
    results: dict[str, Any] = {"environment": environment(), "options": opts.__dict__, "scenarios": {}}
    stack = Stack(keep_tmp=a.keep_tmp)
    t0 = time.monotonic()
    try:
        redis_port = stack.redis() if {"gateway", "gateway-cached"} & set(names) else None
        up, targets = start_targets(stack, names, redis_port, opts.revocation_cache)
        token, tokens = get_tokens(stack, targets)
        for t in targets.values():
            client.check_identity(t.api_url, tokens.get(t.name, token), t.injects_identity)
        results["startup_s"] = {n: t.startup_s for n, t in targets.items()}
        a.out.mkdir(parents=True, exist_ok=True)
        bench = Bench(opts, stack, a.out, up, targets, token, redis_port, log=lambda s: print(s, flush=True),
                      tokens=tokens)
        for name in chosen:
            print(f"== {name} ({time.monotonic() - t0:.0f}s elapsed)", flush=True)
            try:
                results["scenarios"][name] = SCENARIOS[name](bench)
            except Exception as exc:  # one broken scenario must not cost the others
                dead = dead_processes(stack)
                print(f"!! scenario {name} failed: {exc!r}{dead}", flush=True)
                results["scenarios"][name] = {"error": repr(exc) + dead}
                stack.keep_tmp = True  # keep the logs of a failed run
        results["gateway_peak_rss_mib"] = (
            scenarios._rss_mib(targets["gateway"]) if "gateway" in targets else None)
    finally:
        if stack.keep_tmp:
            print(f"temp files (configs, logs) kept in {stack.tmp}")
        stack.close()
    results["elapsed_s"] = time.monotonic() - t0
    results["loadavg_end"] = list(os.getloadavg())
    return results


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    # SIGTERM becomes SystemExit, so the ``finally`` that stops every started process still runs.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    results = run(a)
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "results.json").write_text(json.dumps(results, indent=1, default=str))
    md = report.markdown(results)
    (a.out / "results.md").write_text(md)
    report.plot(results, a.out / "bench.png")
    print("\n" + md)
    print(f"written: {a.out}/results.md, results.json, bench.png ({results['elapsed_s']:.0f}s)")
    return 1 if any("error" in s for s in results["scenarios"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
