"""The measurements.  Each scenario returns a JSON-able dict that report.py renders.

Every comparison alternates its variants within a round and repeats rounds,
so that a slow minute on the shared machine hurts all variants alike; the
figures that matter are the per-round ratios.
"""
from __future__ import annotations

import asyncio
import subprocess
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Mapping

import aiohttp

from . import client, configs
from . import profile as pyspy
from .procs import cpu_seconds, peak_rss_kib, rss_kib
from .stack import Stack, Target
from .stats import paired_delta, paired_ratio, summary
from .wrk import WrkResult, run_wrk

__all__ = ["Options", "Bench", "headline", "steady", "wait_subscribed", "latency", "refresh_storm", "routes", "families", "stream",
           "flood", "workers", "profile", "revocation_cache"]

Runs = dict[str, list[dict[str, Any]]]
REFRESH_PATH = "/auth/token/refresh"


@dataclass
class Options:
    """Knobs of one run (``--quick`` shrinks them all)."""

    duration: float = 5.0
    concurrency: list[int] = field(default_factory=lambda: [1, 16, 64, 256])
    rounds: int = 3
    threads: int = 1
    paced_rps: int = 400
    refresh_clients: int = 256
    refresh_rounds: int = 1
    families: int = 1_000_000
    stream_mb: int = 1024
    big_routes: int = 10_000
    workers: int = 2
    revocation_cache: float = 5.0  # seconds: the TTL compared with 0s in the revcache scenario (and gateway-cached's)
    headline_rounds: int = 5  # the method: every target once per round, order rotated, 5 rounds
    headline_connections: int = 64
    warm_up: float = 2.0  # seconds of 16-connection load per target before the headline and steady runs


@dataclass
class Bench:
    """What the scenarios share: options, the running stack and a valid access token.

    ``tokens``: a target's own token where ``token`` is not valid there (each gateway checks the session of a token
    against its own store: a login at the Redis gateway is unknown to the memory store's)."""

    opts: Options
    stack: Stack
    out_dir: Path
    upstream: Target
    targets: dict[str, Target]
    token: str
    redis_port: int | None
    log: Callable[[str], None] = print
    tokens: dict[str, str] = field(default_factory=dict)

    def token_for(self, target: Target) -> str:
        return self.tokens.get(target.name, self.token)

    @property
    def gateway(self) -> Target | None:
        return self.targets.get("gateway")


def _rotate(names: list[str], k: int) -> list[str]:
    k %= len(names)
    return names[k:] + names[:k]


def _fmt(res: WrkResult) -> str:
    bad = f"  non-2xx {res.non_2xx} sockerr {res.socket_errors}" if not res.ok else ""
    cpu = f"  cpu {res.cpu_us:6.0f} µs/req" if res.cpu_us is not None else ""
    return f"{res.rps:9.0f} rps  p50 {res.p50_ms:7.2f} ms  p99 {res.p99_ms:7.2f} ms{cpu}{bad}"


def _record(b: Bench, tag: str, name: str, res: WrkResult, rnd: int, expect_ok: bool = True) -> dict[str, Any]:
    valid = res.ok if expect_ok else (res.non_2xx == res.requests and res.requests > 0)
    b.log(f"[{tag} r{rnd + 1}] {name:<16} {_fmt(res)}{'' if valid else '  <-- UNEXPECTED STATUS'}")
    ok_rps = (res.requests - res.non_2xx) / res.seconds if res.seconds else 0.0
    return {**res.as_dict(), "ok_rps": ok_rps, "round": rnd, "valid": valid}


def _rss_mib(t: Target) -> float:
    return peak_rss_kib(t.proc.pid) / 1024 if t.proc else float("nan")


def _alternate(b: Bench, tag: str, variants: Mapping[str, Callable[[], WrkResult]],
               expect_ok: dict[str, bool] | None = None) -> Runs:
    """Run each variant once per round, rotating the order every round."""
    runs: Runs = {n: [] for n in variants}
    for rnd in range(b.opts.rounds):
        for name in _rotate(list(variants), rnd):
            ok = (expect_ok or {}).get(name, True)
            runs[name].append(_record(b, tag, name, variants[name](), rnd, ok))
    return runs


def _summaries(runs: Runs) -> dict[str, dict[str, Any]]:
    return {n: {"rps": summary(r["rps"] for r in rs), "ok_rps": summary(r["ok_rps"] for r in rs),
                "p50_ms": summary(r["p50_ms"] for r in rs),
                "p99_ms": summary(r["p99_ms"] for r in rs),
                "cpu_us": summary(r["cpu_us"] for r in rs if r.get("cpu_us") is not None),
                "valid": all(r["valid"] for r in rs)}
            for n, rs in runs.items()}


def _api(b: Bench, t: Target, c: int, token: str | None = None, script: str | None = "bearer.lua",
         path: str = configs.API_PATH, env: dict[str, str] | None = None) -> WrkResult:
    """One wrk run against ``t``, with the CPU time its process trees spent per request meanwhile."""
    pids = t.cpu_pids
    before = cpu_seconds(pids)
    res = run_wrk(t.base + path, c, b.opts.duration, script,
                  env={"BENCH_TOKEN": token or b.token_for(t), **(env or {})}, threads=b.opts.threads)
    if pids and res.requests:
        res.cpu_us = (cpu_seconds(pids) - before) / res.requests * 1e6
    return res


def _warm_up(b: Bench, names: list[str]) -> None:
    """Fills connection pools, caches and the allocator before measuring."""
    for name in names:
        run_wrk(b.targets[name].api_url, 16, min(b.opts.warm_up, b.opts.duration), "bearer.lua",
                env={"BENCH_TOKEN": b.token_for(b.targets[name])}, threads=b.opts.threads)


# -- headline: the figures ------------------------------------------------------

GATEWAY_VARIANTS = ("gateway-memory", "gateway-cached", "gateway", "prototype")  # prototype: bench/protocol_prototype.py
REFERENCES = ("direct", "nginx", "haproxy", "naive", "nginx-authreq")


def headline(b: Bench) -> dict[str, Any]:
    """Every target at 64 connections, once per round, order rotated, ``headline_rounds`` rounds.

    The issue's method: RPS ratios and CPU per request (utime + stime of each
    target's process trees from /proc over the run, divided by its requests),
    each ratio taken within a round, then the median over rounds. CPU capacity
    = requests one CPU-second serves = 1 / CPU per request, so "capacity
    gateway/naive" is cpu(naive) / cpu(gateway).
    """
    names = list(b.targets)
    _warm_up(b, names)
    c = b.opts.headline_connections
    runs: Runs = {n: [] for n in names}
    for rnd in range(b.opts.headline_rounds):
        for name in _rotate(names, rnd):
            runs[name].append(_record(b, f"headline c={c}", name, _api(b, b.targets[name], c), rnd))
    ratios: dict[str, dict[str, dict[str, float]]] = {}
    for gw in (g for g in GATEWAY_VARIANTS if g in runs):
        ratios[gw] = {}
        for ref in (r for r in REFERENCES if r in runs):
            ratios[gw][f"rps/{ref}"] = paired_ratio(runs[gw], runs[ref])
            ratios[gw][f"cpu/{ref}"] = paired_ratio(runs[gw], runs[ref], "cpu_us")
            ratios[gw][f"capacity/{ref}"] = paired_ratio(runs[ref], runs[gw], "cpu_us")
    return {"connections": c, "rounds": b.opts.headline_rounds, "runs": runs, "summary": _summaries(runs),
            "ratios": ratios}


# -- steady state -------------------------------------------------------------------


def steady(b: Bench) -> dict[str, Any]:
    """RPS and latency of every target at every concurrency, targets alternated per round."""
    names = list(b.targets)
    _warm_up(b, names)
    runs: dict[str, dict[int, list[dict[str, Any]]]] = {n: {c: [] for c in b.opts.concurrency} for n in names}
    for rnd in range(b.opts.rounds):
        for i, c in enumerate(b.opts.concurrency):
            for name in _rotate(names, rnd + i):
                res = _api(b, b.targets[name], c)
                runs[name][c].append(_record(b, f"steady c={c}", name, res, rnd))
    summ = {n: {c: _summaries({"x": rs})["x"] for c, rs in byc.items()} for n, byc in runs.items()}
    ratios: dict[str, dict[int, dict[str, float]]] = {}
    if "gateway" in runs:
        for ref in (n for n in names if n != "gateway"):
            ratios[f"gateway/{ref}"] = {c: paired_ratio(runs["gateway"][c], runs[ref][c])
                                        for c in b.opts.concurrency}
    added = {}
    if "gateway" in runs and "direct" in runs:
        added = {c: {"p50_ms": paired_delta(runs["gateway"][c], runs["direct"][c], "p50_ms"),
                     "p99_ms": paired_delta(runs["gateway"][c], runs["direct"][c], "p99_ms")}
                 for c in b.opts.concurrency}
    rss = {n: _rss_mib(t) for n, t in b.targets.items()}
    return {"runs": runs, "summary": summ, "ratios": ratios, "added_latency": added, "peak_rss_mib": rss,
            "diagnosis": _diagnose(b, runs)}


def _diagnose(b: Bench, runs: dict[str, dict[int, list[dict[str, Any]]]]) -> dict[str, dict[int, dict[str, int]]]:
    """For each (target, concurrency) that got non-2xx: a short extra run that counts answers by code.

    Kept out of the measured runs because parsing every body costs wrk CPU.
    """
    out: dict[str, dict[int, dict[str, int]]] = {}
    for name, byc in runs.items():
        for c, rs in byc.items():
            if not all(r["valid"] for r in rs):
                res = run_wrk(b.targets[name].api_url, c, min(3.0, b.opts.duration), "status.lua",
                              env={"BENCH_TOKEN": b.token_for(b.targets[name])})
                out.setdefault(name, {})[c] = res.codes
                b.log(f"[steady c={c}] {name} non-2xx by code: {res.codes}")
    return out


# -- latency below saturation -------------------------------------------------------------


def latency(b: Bench, connections: int = 64) -> dict[str, Any]:
    """Latency at 64 open connections but a moderate total rate, where queueing does not dominate.

    Each connection waits ~connections/paced_rps seconds between requests
    (jittered), so all targets see the same offered load and the difference
    in latency is the work each one adds.
    """
    delay_ms = max(1, int(connections / b.opts.paced_rps * 1000))
    env = {"BENCH_DELAY_MS": str(delay_ms)}
    variants = {n: partial(_api, b, t, connections, script="paced.lua", env=env) for n, t in b.targets.items()}
    runs = _alternate(b, f"paced {b.opts.paced_rps}/s c={connections}", variants)
    added = {f"{n}-direct": {k: paired_delta(runs[n], runs["direct"], k) for k in ("p50_ms", "p99_ms")}
             for n in runs if n != "direct" and "direct" in runs}
    return {"connections": connections, "offered_rps": b.opts.paced_rps, "delay_ms": delay_ms,
            "runs": runs, "summary": _summaries(runs), "added": added}


# -- refresh storm ----------------------------------------------------------------------


def _storm(b: Bench, gw: Target, tokens: list[str], rnd: int, tag: str) -> dict[str, Any]:
    path = b.stack.tmp / f"refresh-{gw.name}-{rnd}.txt"
    path.write_text("\n".join(tokens) + "\n")
    res = run_wrk(gw.base + REFRESH_PATH, len(tokens), b.opts.duration, "refresh.lua",
                  env={"BENCH_REFRESH_FILE": str(path), "BENCH_REFRESH_PATH": REFRESH_PATH})
    return _record(b, tag, gw.name, res, rnd)


def refresh_storm(b: Bench, gw: Target | None = None, clients: int | None = None,
                  rounds: int | None = None) -> dict[str, Any]:
    """``clients`` connections, each rotating its own refresh token as fast as it can.

    Tokens come from real logins made beforehand (argon2 makes them slow, and
    we want to measure refresh, not login); each round needs fresh ones since a
    rotated token is spent.  The login rate seen while minting is reported too.
    """
    gw = gw or b.gateway
    assert gw is not None
    clients = clients or b.opts.refresh_clients
    rounds = rounds or b.opts.refresh_rounds
    assert gw.proc is not None
    b.log(f"[refresh] minting {clients * rounds} logins on {gw.name} ...")
    rss = {"before_logins": rss_kib(gw.proc.pid) / 1024}
    pairs, login_rate = client.mint_logins(gw.base, clients * rounds, concurrency=4)
    rss["after_logins"] = rss_kib(gw.proc.pid) / 1024
    b.log(f"[refresh] {login_rate:.1f} logins/s")
    runs = [_storm(b, gw, [p["refresh"] for p in pairs[r * clients:(r + 1) * clients]], r,
                   f"refresh storm c={clients}") for r in range(rounds)]
    rss["after_storm"] = rss_kib(gw.proc.pid) / 1024
    return {"clients": clients, "login_per_s": login_rate, "runs": runs, "rss_mib": rss,
            "summary": _summaries({"refresh": runs})["refresh"],
            "refresh_over_login": summary(r["rps"] / login_rate for r in runs),
            "peak_rss_mib": _rss_mib(gw)}


# -- 10,000 routes ------------------------------------------------------------------------


def routes(b: Bench) -> dict[str, Any]:
    """The same request through a 20-route and a 10,000-route gateway (/api is next to last in both)."""
    assert b.gateway is not None and b.redis_port is not None
    big = b.stack.gateway(f"gateway-{b.opts.big_routes}", b.upstream, _redis_url(b, 0), b.opts.big_routes)
    try:
        client.check_identity(big.api_url, b.token, True)
        names = {"20 routes": b.gateway, f"{b.opts.big_routes} routes": big}
        out: dict[str, Any] = {"startup_s": {n: t.startup_s for n, t in names.items()}, "by_c": {}}
        for c in (1, 64):
            variants = {n: partial(_api, b, t, c) for n, t in names.items()}
            runs = _alternate(b, f"routes c={c}", variants)
            a, z = list(names)
            out["by_c"][c] = {"runs": runs, "summary": _summaries(runs),
                              "ratio": paired_ratio(runs[z], runs[a])}
        out["peak_rss_mib"] = {n: _rss_mib(t) for n, t in names.items()}
        return out
    finally:
        b.stack.stop(big.proc)


# -- 1 million live families ------------------------------------------------------------------


def _redis_url(b: Bench, db: int) -> str:
    return f"redis://127.0.0.1:{b.redis_port}/{db}"


def _resp(*parts: bytes) -> bytes:
    return b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)


def _fill_families(port: int, db: int, n: int, prefix: str = "gwbench:", batch: int = 20_000) -> float:
    """``n`` live families shaped like RedisStore's (``<prefix>{fid}:fam`` hash + TTL), via --pipe."""
    import os
    start = time.perf_counter()
    proc = subprocess.Popen(["redis-cli", "-p", str(port), "--pipe"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert proc.stdin is not None
    proc.stdin.write(_resp(b"SELECT", str(db).encode()))
    for done in range(0, n, batch):
        ids = os.urandom(32 * min(batch, n - done)).hex()
        chunk = []
        for i in range(0, len(ids), 64):
            key = b"%s{%s}:fam" % (prefix.encode(), ids[i:i + 32].encode())
            ttl = b"%d" % (86_400_000 + (i * 7919) % 1_123_200_000)  # 1 to 14 days left
            chunk.append(_resp(b"HSET", key, b"current", ids[i + 32:i + 64].encode()))
            chunk.append(_resp(b"PEXPIRE", key, ttl))
        proc.stdin.write(b"".join(chunk))
    proc.stdin.close()
    assert proc.stdout is not None
    out = proc.stdout.read().decode(errors="replace")  # redis-cli prints its summary at the end
    proc.wait(timeout=300)
    if proc.returncode != 0 or "errors: 0" not in out:
        raise RuntimeError(f"redis-cli --pipe failed: {out}")
    return time.perf_counter() - start


def _redis_info(port: int, db: int) -> dict[str, Any]:
    size = subprocess.run(["redis-cli", "-p", str(port), "-n", str(db), "DBSIZE"], capture_output=True,
                          text=True, timeout=30).stdout.strip()
    mem = subprocess.run(["redis-cli", "-p", str(port), "INFO", "memory"], capture_output=True,
                         text=True, timeout=30).stdout
    used = next((int(l.split(":")[1]) for l in mem.splitlines() if l.startswith("used_memory:")), 0)
    return {"dbsize": int(size or 0), "redis_used_mib": used / 2**20}


def _paired_storms(b: Bench, gws: dict[str, Target], clients: int) -> Runs:
    """Two refresh storms per gateway in the order A B B A, tokens minted for all of them first."""
    tokens = {n: [p["refresh"] for p in client.mint_logins(t.base, 2 * clients, concurrency=4)[0]]
              for n, t in gws.items()}
    a, z = list(gws)
    runs: Runs = {a: [], z: []}
    for rnd, name in enumerate((a, z, z, a)):
        batch = tokens[name][len(runs[name]) * clients:(len(runs[name]) + 1) * clients]
        runs[name].append(_storm(b, gws[name], batch, rnd // 2, f"families refresh c={clients}"))
    return runs


def families(b: Bench) -> dict[str, Any]:
    """Access and refresh through a gateway whose Redis db holds 1M live families vs a near-empty one."""
    assert b.gateway is not None and b.redis_port is not None
    b.log(f"[families] filling db 1 with {b.opts.families:,} families ...")
    fill_s = _fill_families(b.redis_port, 1, b.opts.families)
    info_full = _redis_info(b.redis_port, 1)
    b.log(f"[families] filled in {fill_s:.1f}s: {info_full}")
    full = b.stack.gateway("gateway-1m", b.upstream, _redis_url(b, 1), 20)
    try:
        token = client.login(full.base)["access"]
        client.check_identity(full.api_url, token, True)
        names = {"near-empty db": (b.gateway, b.token), f"{b.opts.families:,} families": (full, token)}
        variants = {n: partial(_api, b, t, 64, token=k) for n, (t, k) in names.items()}
        runs = _alternate(b, "families c=64", variants)
        a, z = list(names)
        clients = min(32, b.opts.refresh_clients)
        storms = _paired_storms(b, {n: t for n, (t, _) in names.items()}, clients)
        return {"refresh_clients": clients, "families": b.opts.families, "fill_s": fill_s, "redis": info_full,
                "redis_db0": _redis_info(b.redis_port, 0),
                "access": {"runs": runs, "summary": _summaries(runs), "ratio": paired_ratio(runs[z], runs[a])},
                "refresh": _summaries(storms), "refresh_ratio": paired_ratio(storms[z], storms[a], "ok_rps"),
                "peak_rss_mib": {n: _rss_mib(t) for n, (t, _) in names.items()}}
    finally:
        b.stack.stop(full.proc)
        subprocess.run(["redis-cli", "-p", str(b.redis_port), "-n", "1", "FLUSHDB"], capture_output=True, timeout=120)


# -- 1 GB streamed body -------------------------------------------------------------------------


async def _upload(url: str, token: str, total: int, chunk: int = 1 << 20) -> tuple[int, Any, float]:
    block = b"x" * chunk

    async def body() -> AsyncIterator[bytes]:
        sent = 0
        while sent < total:
            n = min(chunk, total - sent)
            yield block if n == chunk else block[:n]
            sent += n

    start = time.perf_counter()
    timeout = aiohttp.ClientTimeout(total=900)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        async with session.post(url, data=body(), headers={"Authorization": f"Bearer {token}"}) as resp:
            payload = await resp.json(content_type=None)
            return resp.status, payload, time.perf_counter() - start


class _Sampler(threading.Thread):
    """Samples a process tree's RSS every 50 ms; the max shows whether memory stayed flat."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.max_kib, self._halt = pid, 0, threading.Event()

    def run(self) -> None:
        while not self._halt.wait(0.05):
            self.max_kib = max(self.max_kib, rss_kib(self.pid))

    def stop(self) -> int:
        self._halt.set()
        self.join()
        return self.max_kib


def _stream_one(b: Bench, t: Target, total: int) -> dict[str, Any]:
    assert t.proc is not None
    before = rss_kib(t.proc.pid)
    sampler = _Sampler(t.proc.pid)
    sampler.start()
    status, payload, secs = asyncio.run(_upload(t.base + configs.UPLOAD_PATH, b.token, total))
    peak = sampler.stop()
    got = payload.get("bytes") if isinstance(payload, dict) else None
    ok = status == 200 and got == total
    row = {"status": status, "bytes_upstream": got, "seconds": secs, "mb_per_s": total / 2**20 / secs,
           "rss_before_mib": before / 1024, "rss_peak_mib": peak / 1024,
           "rss_growth_mib": (peak - before) / 1024, "ok": ok}
    b.log(f"[stream {total >> 20} MiB] {t.name:<10} {row['mb_per_s']:7.1f} MiB/s  rss {row['rss_before_mib']:.1f}"
          f" -> peak {row['rss_peak_mib']:.1f} MiB{'' if ok else f'  <-- FAILED {status} {payload}'}")
    return row


def stream(b: Bench) -> dict[str, Any]:
    """POST a generated body of ``stream_mb`` MiB; throughput and the proxy's RSS while it passes.

    For ``direct`` the RSS is the upstream's own.  The naive proxy is left out
    on purpose: it buffers the body, i.e. would hold the whole GiB in memory.
    """
    total = b.opts.stream_mb << 20
    names = [n for n in ("gateway", "nginx", "direct") if n in b.targets]
    return {"mib": b.opts.stream_mb, "runs": {n: _stream_one(b, b.targets[n], total) for n in names}}


# -- invalid-token flood -------------------------------------------------------------------------


def flood(b: Bench, connections: int = 64) -> dict[str, Any]:
    """Acceptances vs rejections on the gateway at 64 connections, variants alternated.

    The bad tokens cover each place a token can fail: not a JWT at all, a
    forged signature (fails at the HMAC), a genuine but expired token (passes
    the HMAC, fails on exp), and no token.  ``public`` (an auth: none route)
    shows what proxying alone costs.
    """
    gw = b.gateway
    assert gw is not None
    bad = {"garbage token": "not-a-jwt.at-all.sorry", "bad signature": client.tamper_signature(b.token),
           "expired token": client.expired_token(b.token, b.stack.secret)}
    statuses = {n: client.get_json(gw.api_url, tok) for n, tok in bad.items()}
    statuses["no token"] = client.get_json(gw.api_url, None)
    variants: dict[str, Callable[[], WrkResult]] = {
        "valid token": partial(_api, b, gw, connections),
        "public route (auth: none)": partial(_api, b, gw, connections, script=None, path=configs.PUBLIC_PATH),
        "no token": partial(_api, b, gw, connections, script=None),
        **{n: partial(_api, b, gw, connections, token=tok) for n, tok in bad.items()},
    }
    expect = {n: n in ("valid token", "public route (auth: none)") for n in variants}
    runs = _alternate(b, f"flood c={connections}", variants, expect)
    ratios = {n: paired_ratio(runs[n], runs["valid token"]) for n in runs if n != "valid token"}
    return {"connections": connections, "runs": runs, "summary": _summaries(runs), "ratio_vs_valid": ratios,
            "first_response": {n: {"status": s, "body": body} for n, (s, body) in statuses.items()}}


# -- workers ----------------------------------------------------------------------------------


def workers(b: Bench) -> dict[str, Any]:
    """One worker vs ``--workers N`` at 64 and 256 connections (same Redis db, same token)."""
    assert b.gateway is not None and b.redis_port is not None
    multi = b.stack.gateway(f"gateway-w{b.opts.workers}", b.upstream, _redis_url(b, 0), 20, b.opts.workers)
    try:
        client.check_identity(multi.api_url, b.token, True)
        names = {"1 worker": b.gateway, f"{b.opts.workers} workers": multi}
        out: dict[str, Any] = {"workers": b.opts.workers, "by_c": {}}
        for c in (64, 256):
            variants = {n: partial(_api, b, t, c) for n, t in names.items()}
            runs = _alternate(b, f"workers c={c}", variants)
            a, z = list(names)
            out["by_c"][c] = {"runs": runs, "summary": _summaries(runs), "ratio": paired_ratio(runs[z], runs[a])}
        out["peak_rss_mib"] = {n: _rss_mib(t) for n, t in names.items()}
        return out
    finally:
        b.stack.stop(multi.proc)


# -- revocation cache ---------------------------------------------------------------------------


def _redis_calls(port: int, commands: tuple[str, ...] = ("exists",)) -> int:
    """How many of ``commands`` the Redis server has run (INFO commandstats), all clients together."""
    out = subprocess.run(["redis-cli", "-p", str(port), "INFO", "commandstats"], capture_output=True,
                         text=True, timeout=30).stdout
    total = 0
    for line in out.splitlines():
        name, _, rest = line.partition(":")
        if name.removeprefix("cmdstat_") in commands:
            total += int(rest.split(",")[0].split("=")[1])
    return total


def _metric_lines(t: Target, prefix: str) -> dict[str, float]:
    """The samples of one metric family on a target's /metrics, by their label text."""
    with urllib.request.urlopen(t.base + "/metrics", timeout=10) as resp:
        text = resp.read().decode()
    return {line.split(" ")[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
            if line.startswith(prefix)}


def wait_subscribed(t: Target, timeout: float = 10.0) -> None:
    """Until a gateway with ``store.revocation_cache`` is subscribed (before that every check bypasses the cache)."""
    deadline = time.monotonic() + timeout
    while _metric_lines(t, "gateway_revocation_cache_subscribed").get("gateway_revocation_cache_subscribed") != 1.0:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{t.name} did not subscribe to revocation events")
        time.sleep(0.1)


def revocation_cache(b: Bench) -> dict[str, Any]:
    """The same gateway with ``store.revocation_cache: 0s`` (every check asks Redis) and with a TTL.

    Both run on the same Redis db with the same token, alternated per round. Besides RPS,
    each run counts the revocation checks Redis served per request (``RedisStore.is_revoked``
    is one EXISTS).
    """
    assert b.gateway is not None and b.redis_port is not None
    ttl = b.opts.revocation_cache
    cached = b.stack.gateway("gateway-revcache", b.upstream, _redis_url(b, 0), 20,
                             store_extra={"revocation_cache": f"{ttl:g}s"})
    try:
        client.check_identity(cached.api_url, b.token, True)
        wait_subscribed(cached)
        run_wrk(cached.api_url, 16, min(2.0, b.opts.duration), "bearer.lua",  # warm-up, as steady does
                env={"BENCH_TOKEN": b.token}, threads=b.opts.threads)
        names = {"revocation_cache 0s": b.gateway, f"revocation_cache {ttl:g}s": cached}
        per_request: dict[str, list[float]] = {n: [] for n in names}

        def counted(name: str, t: Target, c: int) -> WrkResult:
            before = _redis_calls(b.redis_port)  # type: ignore[arg-type]
            res = _api(b, t, c)
            per_request[name].append((_redis_calls(b.redis_port) - before) / max(res.requests, 1))  # type: ignore[arg-type]
            return res

        out: dict[str, Any] = {"ttl_s": ttl, "by_c": {}}
        for c in (1, 64):
            variants = {n: partial(counted, n, t, c) for n, t in names.items()}
            runs = _alternate(b, f"revcache c={c}", variants)
            a, z = list(names)
            out["by_c"][c] = {"runs": runs, "summary": _summaries(runs), "ratio": paired_ratio(runs[z], runs[a])}
        out["redis_commands_per_request"] = {n: summary(v) for n, v in per_request.items()}
        out["cache_metrics"] = _metric_lines(cached, "gateway_revocation_cache_")
        out["peak_rss_mib"] = {n: _rss_mib(t) for n, t in names.items()}
        b.log("[revcache] redis revocation checks per request: "
              + ", ".join(f"{n} {s['median']:.2f}" for n, s in out["redis_commands_per_request"].items()))
        return out
    finally:
        b.stack.stop(cached.proc)


# -- profile -----------------------------------------------------------------------------------


def profile(b: Bench, connections: int = 64) -> dict[str, Any]:
    """py-spy samples of each gateway variant under wrk at 64 connections (valid tokens).

    The sampler costs some CPU on the shared cores, so this run's RPS is not
    comparable with the others; only the shares matter.
    """
    names = [n for n in GATEWAY_VARIANTS if n in b.targets]
    return {"by_target": {n: _profile_one(b, b.targets[n], connections) for n in names}}


def _profile_one(b: Bench, gw: Target, connections: int) -> dict[str, Any]:
    assert gw.proc is not None
    raw = b.out_dir / f"profile-{gw.name}.txt"
    seconds = max(5.0, b.opts.duration * 2)
    sampler = pyspy.record(gw.proc.pid, seconds, raw)
    try:
        res = run_wrk(gw.api_url, connections, seconds - 1, "bearer.lua", env={"BENCH_TOKEN": b.token_for(gw)},
                      threads=b.opts.threads)
    finally:
        _, err = sampler.communicate(timeout=seconds + 60)
    if sampler.returncode != 0 or not raw.exists():
        raise RuntimeError(f"py-spy failed ({sampler.returncode}): {err.decode(errors='replace')[-500:]}")
    summ = pyspy.summarize(raw)
    b.log(f"[profile {gw.name}] {summ['samples']} samples while serving {res.rps:.0f} rps; "
          + ", ".join(f"{k} {v:.0f}%" for k, v in summ["activities"].items()))
    return {"connections": connections, "seconds": seconds, "rps_while_sampling": res.rps,
            "raw_file": raw.name, **summ}
