"""Decision mode's cost: ``.venv/bin/python -m bench.decision [--rounds 3] [--seconds 5]``.

Targets, all in front of the benchmark upstream, hit by wrk (64 connections, the same bearer token,
``configs.API_PATH``), interleaved round by round:

* ``nginx``: nginx proxying without auth (bench/configs.py), the ceiling;
* ``haproxy-jwt``: HAProxy 2.6 verifying the same HS256 token natively (``Stack.haproxy``, the same target as the proxy-mode bench);
* ``gateway-proxy``: the gateway proxying (proxy mode), the reference for the CPU target;
* ``decision+cache``: nginx running deploy/decision/nginx.conf, the gateway deciding, nginx caching decisions;
* ``decision``: the same without nginx's cache (``proxy_cache off``): every request decided;
* ``decision-no-gw-cache``: as ``decision``, the gateway's own decision cache off (``limits.admission_cache: 0``),
  to see what that cache pays;
* ``gateway-healthz``: the gateway's ``/healthz``, the floor of any answer it gives (server, middleware, log).

The gateway runs one worker with Redis and ``store.revocation_cache: 5s`` (``decision.max_age: 5s``).
CPU per request is read from /proc (utime + stime of each process tree, before and after each wrk run)
and divided by the requests wrk completed. Targets of issue 12: with the cache >= 0.9x nginx's RPS;
without it, the gateway's CPU per decision <= 0.5x its CPU per proxied request. Writes
bench/results/decision.md.
"""
from __future__ import annotations

import argparse
import getpass
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import configs  # noqa: E402
from bench.client import login  # noqa: E402
from bench.procs import Proc, free_port, tree_pids  # noqa: E402
from bench.stack import PY, ROOT, Stack, Target  # noqa: E402
from bench.wrk import run_wrk  # noqa: E402

CONNECTIONS = 64
TICK = os.sysconf("SC_CLK_TCK")
RESULT = ROOT / "bench" / "results" / "decision.md"


def cpu_seconds(root: int) -> float:
    """utime + stime of ``root`` and its descendants so far."""
    total = 0
    for pid in tree_pids(root):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of proc(5))
    return total / TICK


def _proc(target: Target) -> Proc:
    assert target.proc is not None, target.name
    return target.proc


def start_gateway(stack: Stack, name: str, upstream: Target, redis_url: str, cache_size: int) -> Target:
    decision = {"front": "nginx", "max_age": "5s"}
    # one prefix: the gateways act as one (a login at either is a session at both), as instances of a deployment do
    return stack.gateway(name, upstream, redis_url, store_extra={"revocation_cache": "5s"}, prefix="decision:",
                         extra={"trust_forwarded_headers": True, "decision": decision,
                                "limits": {"max_requests_per_client": 4096, "admission_cache": cache_size}})


def start_decision_nginx(stack: Stack, name: str, gateway: Target, upstream: Target, cached: bool,
                         tree: Path = ROOT) -> Target:
    """nginx in front of ``gateway`` (started by ``stack`` under its name), with the site config of ``tree``
    (another checkout, for A/B runs): what ``gateway decision-config nginx`` generates from the gateway's own
    config (``--front-cache`` when ``cached``), or for trees older than that generator their
    deploy/decision/nginx.conf with its marked lines filled in."""
    port = free_port()
    directory = stack.tmp / name
    for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi", "decisions"):
        (directory / sub).mkdir(parents=True, exist_ok=True)
    gateway_at, app_at = gateway.base.removeprefix("http://"), upstream.base.removeprefix("http://")
    if (tree / "gateway" / "decision" / "configs.py").exists():
        argv = [PY, "-m", "gateway", "decision-config", "nginx", "--config", str(stack.tmp / gateway.name / "gateway.yaml"),
                "--listen", f"127.0.0.1:{port}", "--gateway", gateway_at, "--app", app_at,
                "--state-dir", str(directory / "decisions"), "--out", str(directory)]
        subprocess.run(argv + (["--front-cache"] if cached else []), check=True, capture_output=True,
                       env={**os.environ, "PYTHONPATH": str(tree), "GATEWAY_SECRET": stack.secret})
        (directory / "site.conf").write_text((directory / "nginx.conf").read_text())
    else:
        deploy = tree / "deploy" / "decision"
        site = []
        for line in (deploy / "nginx.conf").read_text().splitlines():
            if "@CACHE@" in line:
                line = f"proxy_cache_path {directory}/decisions levels=1:2 keys_zone=gateway_decisions:10m inactive=60s;"
            elif "@GATEWAY@" in line:
                line = f"upstream gateway {{ server {gateway_at}; keepalive 128; }}"
            elif "@APP@" in line:
                line = f"upstream app {{ server {app_at}; keepalive 128; }}"
            elif "@LISTEN@" in line:
                line = f"listen 127.0.0.1:{port} reuseport;"
            elif not cached and line.strip() == "proxy_cache gateway_decisions;":
                line = "proxy_cache off;"
            site.append(line)
        (directory / "site.conf").write_text("\n".join(site) + "\n")
        (directory / "gateway-proxy-headers.conf").write_bytes((deploy / "gateway-proxy-headers.conf").read_bytes())
    main = directory / "main.conf"
    user = f"user {getpass.getuser()};" if os.geteuid() == 0 else ""  # workers may write the cache under tmp
    main.write_text(f"""
{user}
worker_processes 1;
pid {directory}/nginx.pid;
error_log {directory}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log {directory}/access.log combined buffer=64k flush=1s;
    client_body_temp_path {directory}/body;
    proxy_temp_path {directory}/proxy;
    fastcgi_temp_path {directory}/fastcgi;
    uwsgi_temp_path {directory}/uwsgi;
    scgi_temp_path {directory}/scgi;
    include {directory}/site.conf;
}}
""")
    proc = stack._start(name, ["nginx", "-p", str(directory), "-e", str(directory / "error.log"), "-c", str(main),
                               "-g", "daemon off;"])
    base = f"http://127.0.0.1:{port}"
    return Target(name, base, proc, injects_identity=True, startup_s=stack._ready(proc, base + "/healthz"))


@dataclass
class Series:
    """One target's runs: RPS and CPU seconds per request of each process that serves it."""

    name: str
    target: Target
    procs: dict[str, Proc]  # role (front, gateway, upstream) -> process
    path: str = configs.API_PATH
    rps: list[float] = field(default_factory=list)
    cpu_us: dict[str, list[float]] = field(default_factory=dict)

    def median_cpu(self, role: str) -> float:
        return statistics.median(self.cpu_us[role]) if role in self.cpu_us else 0.0


def measure(series: Series, token: str, seconds: float) -> None:
    before = {role: cpu_seconds(proc.pid) for role, proc in series.procs.items()}
    result = run_wrk(series.target.base + series.path, CONNECTIONS, seconds, env={"BENCH_TOKEN": token}, threads=2)
    after = {role: cpu_seconds(proc.pid) for role, proc in series.procs.items()}
    if not result.ok:
        raise RuntimeError(f"{series.name}: {result.non_2xx} non-2xx, {result.socket_errors} socket errors")
    series.rps.append(result.rps)
    for role in series.procs:
        series.cpu_us.setdefault(role, []).append((after[role] - before[role]) / result.requests * 1e6)


def check(series: Series, token: str) -> None:
    """The target injects the caller's identity (the upstream echoes it), so nothing passes vacuously."""
    from bench.client import get_json

    if series.path != configs.API_PATH:
        return
    status, body = get_json(series.target.api_url, token)
    expected = configs.USERNAME if series.target.injects_identity else None
    identity = {k.lower(): v for k, v in body.get("identity", {}).items()} if isinstance(body, dict) else {}
    if status != 200 or identity.get("x-user-id") != expected:
        raise RuntimeError(f"{series.name}: {status} {body}")


def report(all_series: list[Series], rounds: int, seconds: float) -> str:
    by = {s.name: s for s in all_series}
    nginx_rps = statistics.median(by["nginx"].rps)
    rows = []
    for s in all_series:
        rps = statistics.median(s.rps)
        front, gateway, upstream = s.median_cpu("front"), s.median_cpu("gateway"), s.median_cpu("upstream")
        rows.append(f"| {s.name} | {rps:,.0f} | {rps / nginx_rps:.2f}x | {front:.0f} | {gateway:.0f} | "
                    f"{front + gateway:.0f} | {upstream:.0f} |")
    cached = statistics.median(by["decision+cache"].rps) / nginx_rps
    per_decision = by["decision"].median_cpu("gateway")
    per_proxy = by["gateway-proxy"].median_cpu("gateway")
    no_gw_cache = by["decision-no-gw-cache"].median_cpu("gateway")
    floor = by["gateway-healthz"].median_cpu("gateway")
    return "\n".join([
        "# Decision mode: nginx + gateway decisions against nginx, HAProxy jwt_verify and proxy mode",
        "",
        f"`.venv/bin/python -m bench.decision --rounds {rounds} --seconds {seconds:g}` on this project's 2-core "
        f"machine; wrk, {CONNECTIONS} connections, 2 threads, the same bearer "
        f"token; targets interleaved over {rounds} rounds of {seconds:g} s; medians. CPU per request: utime + stime "
        "of each process tree from /proc over each run / requests completed. The gateway: one worker, Redis with "
        "`store.revocation_cache: 5s`, `decision.max_age: 5s`, 20 routes, access log on; nginx: one worker, access "
        "log on.",
        "",
        "| target | req/s | vs nginx | CPU µs/req front | CPU µs/req gateway | front + gateway | upstream |",
        "|---|---|---|---|---|---|---|",
        *rows,
        "",
        "Targets (issue 12):",
        "",
        f"- with nginx's decision cache: {cached:.2f}x nginx's RPS (target >= 0.9x): "
        f"{'met' if cached >= 0.9 else 'missed'};",
        f"- without it: {per_decision:.0f} µs of gateway CPU per decision against {per_proxy:.0f} µs per proxied "
        f"request, {per_decision / per_proxy:.2f}x (target <= 0.5x): {'met' if per_decision <= 0.5 * per_proxy else 'missed'};",
        f"- the gateway's own decision cache: {no_gw_cache:.0f} µs per decision without it, {per_decision:.0f} µs "
        f"with it ({(1 - per_decision / no_gw_cache) * 100:+.0f} % saved);",
        f"- the floor: the gateway's `/healthz` (no auth, no upstream) costs {floor:.0f} µs per request, "
        f"{floor / per_proxy:.2f}x of a proxied request: what any answer of this aiohttp server, its middleware, "
        "access log and metrics costs; a decision adds "
        f"{per_decision - floor:.0f} µs to it.",
        "",
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    stack = Stack()
    try:
        upstream = stack.upstream()
        redis_url = f"redis://127.0.0.1:{stack.redis()}/0"
        gateway = start_gateway(stack, "gateway", upstream, redis_url, cache_size=10_000)
        uncached_gateway = start_gateway(stack, "gateway-no-cache", upstream, redis_url, cache_size=0)
        nginx = stack.nginx(upstream)
        haproxy = stack.haproxy(upstream)  # the proxy-mode bench's target (configs.write_haproxy_conf)
        with_cache = start_decision_nginx(stack, "nginx-decision-cache", gateway, upstream, cached=True)
        without = start_decision_nginx(stack, "nginx-decision", gateway, upstream, cached=False)
        without_gw = start_decision_nginx(stack, "nginx-decision-no-gw", uncached_gateway, upstream, cached=False)
        token = login(gateway.base)["access"]
        up = {"upstream": _proc(upstream)}
        all_series = [
            Series("nginx", nginx, {"front": _proc(nginx), **up}),
            Series("haproxy-jwt", haproxy, {"front": _proc(haproxy), **up}),
            Series("gateway-proxy", gateway, {"gateway": _proc(gateway), **up}),
            Series("gateway-healthz", gateway, {"gateway": _proc(gateway)}, path="/healthz"),
            Series("decision+cache", with_cache, {"front": _proc(with_cache), "gateway": _proc(gateway), **up}),
            Series("decision", without, {"front": _proc(without), "gateway": _proc(gateway), **up}),
            Series("decision-no-gw-cache", without_gw,
                   {"front": _proc(without_gw), "gateway": _proc(uncached_gateway), **up}),
        ]
        for series in all_series:
            check(series, token)
            run_wrk(series.target.base + series.path, CONNECTIONS, 1, env={"BENCH_TOKEN": token})  # warm-up, not counted
        for round_ in range(args.rounds):
            for series in all_series:
                measure(series, token, args.seconds)
                time.sleep(0.5)
            print(f"round {round_ + 1}/{args.rounds}: " + ", ".join(f"{s.name} {s.rps[-1]:,.0f}" for s in all_series),
                  flush=True)
        text = report(all_series, args.rounds, args.seconds)
    finally:
        stack.close()
    RESULT.parent.mkdir(exist_ok=True)
    RESULT.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
