"""What tracing costs a proxied request: ``.venv/bin/python -m bench.tracing [--rounds 5] [--duration 4]``.

Two gateways from this tree on the bench's configuration (memory store, 20 routes, one worker), one with
``tracing`` off and one with it on, exporting to a real OTLP/HTTP endpoint in this process's own thread
(an aiohttp app that accepts and discards the protobuf); wrk at 64 connections, the gateways in turns,
order rotated per round; the figure is the median over rounds of the traced gateway's CPU per request
divided by the untraced one's. Tracing off against the code before tracing existed is an A/B of trees
(``bench/ab.py``); docs/performance.md has both. Writes ``bench/results/tracing.md``.
"""
from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import threading
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    __package__ = "bench"

from aiohttp import web  # noqa: E402

from . import client  # noqa: E402
from .procs import cpu_seconds, free_port  # noqa: E402
from .stack import Stack, Target  # noqa: E402
from .wrk import run_wrk  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "tracing.md"


class Collector:
    """An OTLP/HTTP endpoint on its own event loop thread: counts export requests and bytes, keeps nothing."""

    def __init__(self) -> None:
        self.port = free_port()
        self.exports = 0
        self.bytes = 0
        self._ready = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()
        self._ready.wait(10)

    async def _receive(self, request: web.Request) -> web.Response:
        self.exports += 1
        self.bytes += len(await request.read())
        return web.Response(content_type="application/x-protobuf", body=b"")

    def _serve(self) -> None:
        async def main() -> None:
            app = web.Application(client_max_size=64 * 1024 * 1024)
            app.router.add_post("/v1/traces", self._receive)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", self.port).start()
            self._ready.set()
            await asyncio.Event().wait()

        asyncio.run(main())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--duration", type=float, default=4.0)
    p.add_argument("--connections", type=int, default=64)
    a = p.parse_args(argv)
    collector = Collector()
    stack = Stack()
    try:
        upstream = stack.upstream()
        tracing = {"enabled": True, "endpoint": f"http://127.0.0.1:{collector.port}/v1/traces", "batch_delay": "1s"}
        targets: dict[str, Target] = {
            "off": stack.gateway("tracing-off", upstream, None),
            "on": stack.gateway("tracing-on", upstream, None, extra={"tracing": tracing}),
        }
        tokens = {n: str(client.login(t.base)["access"]) for n, t in targets.items()}  # each its own memory store
        for n, t in targets.items():
            client.check_identity(t.api_url, tokens[n], True)
            run_wrk(t.api_url, 16, 2, "bearer.lua", env={"BENCH_TOKEN": tokens[n]})  # warm-up
        cpu: dict[str, list[float]] = {n: [] for n in targets}
        rps: dict[str, list[float]] = {n: [] for n in targets}
        names = list(targets)
        for rnd in range(a.rounds):
            for name in names[rnd % 2:] + names[:rnd % 2]:
                t = targets[name]
                before = cpu_seconds(t.cpu_pids)
                res = run_wrk(t.api_url, a.connections, a.duration, "bearer.lua", env={"BENCH_TOKEN": tokens[name]})
                assert res.ok, f"{name}: {res.non_2xx} non-2xx"
                cpu[name].append((cpu_seconds(t.cpu_pids) - before) / max(res.requests, 1) * 1e6)
                rps[name].append(res.rps)
                print(f"r{rnd + 1} tracing {name:<4} {res.rps:8.0f} rps {cpu[name][-1]:7.1f} µs/req", flush=True)
        ratios = [on / off for on, off in zip(cpu["on"], cpu["off"], strict=True)]
        ratio = statistics.median(ratios)
        lines = [
            "# What tracing costs a proxied request",
            "",
            f"`python -m bench.tracing --rounds {a.rounds} --duration {a.duration:g}` (wrk, {a.connections} connections, "
            "memory store, one worker; the traced gateway exports to a real OTLP/HTTP endpoint).",
            "",
            "| tracing | CPU µs per request (median) | RPS (median) |",
            "|---|---|---|",
            *(f"| {n} | {statistics.median(cpu[n]):.0f} | {statistics.median(rps[n]):.0f} |" for n in names),
            "",
            f"Traced / untraced CPU per request: **{ratio:.2f}x** (per round {', '.join(f'{r:.2f}' for r in ratios)}); "
            f"{collector.exports} export requests, {collector.bytes / 1e6:.1f} MB of spans received.",
            "",
        ]
        RESULTS.write_text("\n".join(lines))
        print("\n".join(lines))
    finally:
        stack.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
