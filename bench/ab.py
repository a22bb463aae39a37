"""A/B of gateway source trees: CPU per request of each, interleaved, behind one upstream.

``.venv/bin/python -m bench.ab base=/tmp/a,new=/tmp/b [--rounds 5] [--duration 4] [--connections 64]
[--store memory|redis|cached] [--mode proxy|decision] [--compiled new]`` where each tree is a checkout of
the project (``git archive <commit> | tar -x -C /tmp/a``). Every tree's gateway runs from its own sources
(``PYTHONPATH``) on the bench's gateway config; every round runs each once (order rotated); the figure
is the median over rounds of each tree's CPU per request divided by the first tree's in the same round.
This is how the levers in docs/performance.md were measured.

``--mode decision``: each tree's gateway in decision mode behind nginx running that tree's own
nginx config (``bench.decision.start_decision_nginx``) with nginx's decision cache off (every request decided by
the gateway, its own caches at their defaults); the figure is the gateway's CPU per request alone, nginx's not counted.

``--together``: in each round every tree's gateway is loaded at the same time (one wrk each), so a
neighbour that slows the machine for a moment slows every tree alike: a narrower spread than rounds one
after the other, though not below a bias of a few per cent between the trees' places (bench/README.md).
They share the cores, so each tree's CPU per request is higher than alone: only the ratio is the figure.

``--instructions N``: instead of CPU time, the instructions each gateway executes per request, counted by
callgrind over N requests on one keep-alive connection per round (``bench.callgrind``): a figure a busy
machine does not move, for levers of a few per cent; the kernel's work is not in it.

``--compiled NAME,...``: those trees are first compiled in place by their own scripts/compile.py (each tree's
module list, so a change of the list is measured; this checkout's script for a tree without one;
docs/performance.md#compiled-hot-path), and their gateways must map the compiled library; every
other tree runs with ``GATEWAY_PURE=1`` and must map none, so one checkout can be measured both ways
(``pure=/tmp/a,compiled=/tmp/a --compiled compiled``).
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    __package__ = "bench"

from . import callgrind, client, configs  # noqa: E402
from .decision import start_decision_nginx  # noqa: E402
from .procs import cpu_seconds, free_port  # noqa: E402
from .scenarios import wait_subscribed  # noqa: E402
from .stack import Stack, Target, _gateway_argv  # noqa: E402
from .wrk import WrkResult, run_wrk  # noqa: E402


def _compile(tree: str) -> None:
    """Compile ``tree`` by its own scripts/compile.py (its own module list), or this checkout's for an older tree."""
    own = Path(tree) / "scripts" / "compile.py"
    script = own if own.exists() else Path(__file__).resolve().parent.parent / "scripts" / "compile.py"
    subprocess.run([sys.executable, str(script), "build", "--tree", tree], check=True)


def _check_build(target: Target, tree: str, compiled: bool) -> None:
    """The gateway of ``tree`` runs the build it is measured as: its compiled library mapped, or none of the tree's."""
    assert target.proc is not None
    root = str(Path(tree).resolve()) + "/"
    mapped = {line.split()[-1] for line in Path(f"/proc/{target.proc.pid}/maps").read_text().splitlines()
              if line.rstrip().endswith(".so") and line.split()[-1].startswith(root)}
    if (compiled and not any("__mypyc." in m for m in mapped)) or (not compiled and mapped):
        raise SystemExit(f"{target.name}: expected the {'compiled' if compiled else 'pure'} build of {tree}, "
                         f"the gateway maps {sorted(mapped) or 'no extension of it'}")


def _start(stack: Stack, name: str, tree: str, upstream: Target, redis_url: str | None, cached: bool,
           decision: bool, compiled: bool, prefix: list[str]) -> Target:
    port = free_port()
    gdir = stack.tmp / name
    gdir.mkdir()
    users = stack.tmp / "users.yaml"
    if not users.exists():
        configs.write_users(users)
    shutil.copy(users, gdir / "users.yaml")
    extra = {"revocation_cache": "5s"} if cached else None
    config = configs.gateway_config(port, upstream.base, redis_url, 20, store_extra=extra)
    if decision:  # nginx asks from 127.0.0.1, and tells the original request in forwarded headers
        config |= {"trust_forwarded_headers": True, "decision": {"front": "nginx", "max_age": "5s"}}
    cfg = configs.write_gateway_config(gdir / "gateway.yaml", config)
    proc = stack._start(name, prefix + _gateway_argv() + ["run", "--config", str(cfg), "--workers", "1"],
                        env={"GATEWAY_SECRET": stack.secret, "PYTHONPATH": tree, "PYTHONHASHSEED": "0",
                               **({} if compiled else {"GATEWAY_PURE": "1"})})
    base = f"http://127.0.0.1:{port}"
    stack._ready(proc, base + "/healthz", 120)
    target = Target(name, base, proc, injects_identity=True)
    if cached:
        wait_subscribed(target)
    return target


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("trees", help="name=path,name=path,...: the first is the reference")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--duration", type=float, default=4.0)
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--store", choices=("memory", "redis", "cached"), default="memory")
    p.add_argument("--mode", choices=("proxy", "decision"), default="proxy")
    p.add_argument("--compiled", default="", help="NAME,...: trees to compile with mypyc first and run compiled")
    p.add_argument("--together", action="store_true",
                   help="load every tree at the same time in each round instead of one after the other")
    p.add_argument("--instructions", type=int, default=0, metavar="N",
                   help="count each gateway's instructions per request over N requests (callgrind) instead of CPU time")
    a = p.parse_args(argv)
    if a.instructions and a.together:
        p.error("--instructions counts one gateway at a time: it takes no --together")
    trees = dict(item.split("=", 1) for item in a.trees.split(","))
    compiled = {n for n in a.compiled.split(",") if n}
    if compiled - set(trees):
        p.error(f"--compiled names no tree: {', '.join(sorted(compiled - set(trees)))}")
    for tree in sorted({trees[n] for n in compiled}):
        _compile(tree)
    stack = Stack()
    try:
        upstream = stack.upstream()
        redis_url = f"redis://127.0.0.1:{stack.redis()}/0" if a.store != "memory" else None
        gateways = {n: _start(stack, n, t, upstream, redis_url, a.store == "cached", a.mode == "decision", n in compiled,
                              callgrind.argv(stack.tmp / f"{n}.callgrind") if a.instructions else [])
                    for n, t in trees.items()}
        # each gateway's own login: a memory store knows only the sessions it started (an unknown one is refused)
        tokens = {n: str(client.login(t.base)["access"]) for n, t in gateways.items()}
        targets = gateways if a.mode == "proxy" else {  # the requests go to nginx, which asks the gateway
            n: start_decision_nginx(stack, f"{n}-nginx", g, upstream, cached=False, tree=Path(trees[n]))
            for n, g in gateways.items()}
        for n, t in targets.items():
            client.check_identity(t.api_url, tokens[n], True)
            run_wrk(t.api_url, 16, 2, "bearer.lua", env={"BENCH_TOKEN": tokens[n]})  # warm-up
            _check_build(gateways[n], trees[n], n in compiled)
        counters = {n: callgrind.Counter(g.proc.pid, stack.tmp / f"{n}.callgrind")  # type: ignore[union-attr]
                    for n, g in gateways.items()} if a.instructions else {}
        for n, counter in counters.items():
            counter.on()
            callgrind.requests(targets[n].api_url, tokens[n], 100)  # warm-up, instrumented
        names = list(targets)
        cpu: dict[str, list[float]] = {n: [] for n in names}
        def load(name: str) -> tuple[float, WrkResult]:
            """One wrk run on ``name``: the gateway's CPU per request over it (its process tree, nginx's never)."""
            pid = gateways[name].proc.pid  # type: ignore[union-attr]
            before = cpu_seconds([pid])
            res = run_wrk(targets[name].api_url, a.connections, a.duration, "bearer.lua",
                          env={"BENCH_TOKEN": tokens[name]})
            return (cpu_seconds([pid]) - before) / max(res.requests, 1) * 1e6, res

        unit = "Ir/req" if a.instructions else "µs/req"
        for rnd in range(a.rounds):
            k = rnd % len(names)
            order = names[k:] + names[:k]
            if a.instructions:
                for name in order:
                    per = counters[name].count(a.instructions, targets[name].api_url, tokens[name])
                    cpu[name].append(per)
                    print(f"r{rnd + 1} {name:<12} {per:9.0f} {unit}", flush=True)
                continue
            if a.together:  # every tree under load at once: a busy neighbour slows all of them alike
                with ThreadPoolExecutor(len(order)) as pool:
                    runs = dict(zip(order, pool.map(load, order), strict=True))
            else:
                runs = {name: load(name) for name in order}
            for name in order:
                per_request, res = runs[name]
                cpu[name].append(per_request)
                print(f"r{rnd + 1} {name:<12} {res.rps:8.0f} rps {per_request:7.1f} µs/req"
                      + ("" if res.ok else "  NON-2xx"), flush=True)
        ref = names[0]
        for name in names:
            ratios = [x / y for x, y in zip(cpu[name], cpu[ref], strict=False)]
            print(f"{name:<12} {'instructions' if a.instructions else 'CPU'} {unit} median "
                  f"{statistics.median(cpu[name]):7.1f}   vs {ref}: "
                  f"{statistics.median(ratios):.3f} ({min(ratios):.3f}-{max(ratios):.3f})")
    finally:
        stack.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
