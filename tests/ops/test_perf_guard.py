"""The performance guard: a short interleaved run that fails only on a large regression of proxy mode's cost.

The gateway (memory store, bench/configs.py's 20-route configuration) and the naive aiohttp + PyJWT proxy
(bench/naive_proxy.py) take turns under the same load (wrk, 64 connections) in one run, and the CPU time of
each process tree per request is compared round by round (as bench/scenarios.py's headline does). The
figures of a full benchmark are in docs/performance.md; this test only keeps them from eroding unseen:
it fails when the gateway costs more than ``LIMIT`` times the naive proxy's CPU per request, that is when it
keeps less than twice the naive proxy's capacity (the issue's example of a large regression). It measured about
0.36x compiled, which ``make test`` runs it on, after issue 21's night round of levers (0.43x after the round
before), and 0.44x-0.47x on another machine of the same class (run M in docs/performance.md), whose single
rounds reached 0.53x; the pure build, about 0.6x before those levers, is held to ``PURE_LIMIT``. Issue 21's
target is 1/3. Machine noise moves both figures alike, but not always within a round: when the median of the
first rounds is over the limit, as many rounds again are run and the median of all of them is judged, so that a
regression, which lasts, fails, and a busy moment of the machine does not.
"""
from __future__ import annotations

import os
import shutil
import statistics
from collections.abc import Iterator

import pytest

from bench import client
from bench.procs import cpu_seconds
from bench.stack import Stack, Target
from bench.wrk import run_wrk

pytestmark = [pytest.mark.skipif(not shutil.which("wrk"), reason="wrk comes from scripts/install-test-deps.sh"),
              pytest.mark.serial]  # weighs CPU seconds per request: alone on the machine

LIMIT = 0.5  # the gateway's CPU per request over the naive proxy's, median of the rounds (compiled)
PURE_LIMIT = 0.8  # the same, when the gateway runs its sources (GATEWAY_PURE=1)
ROUNDS = 5  # and 5 more when their median is over the limit
SECONDS = 3.0
CONNECTIONS = 64


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    s = Stack()
    try:
        yield s
    finally:
        s.close()


def _cpu_per_request(target: Target, token: str, seconds: float = SECONDS) -> float:
    before = cpu_seconds(target.cpu_pids)
    result = run_wrk(target.api_url, CONNECTIONS, seconds, "bearer.lua", env={"BENCH_TOKEN": token})
    assert result.ok and result.requests > 0, f"{target.name}: {result.non_2xx} non-2xx of {result.requests}"
    return (cpu_seconds(target.cpu_pids) - before) / result.requests


def test_the_gateway_keeps_twice_the_naive_proxys_capacity(stack: Stack) -> None:
    upstream = stack.upstream()
    targets = [stack.gateway("gateway-memory", upstream, None), stack.naive(upstream)]
    token = str(client.login(targets[0].base)["access"])  # the naive proxy checks the same HS256 token
    for target in targets:
        client.check_identity(target.api_url, token, expect_identity=True)  # 200 with X-User-Id: no fast refusals
        _cpu_per_request(target, token, seconds=1.0)  # warm-up: pools, caches, the allocator
    limit = PURE_LIMIT if os.environ.get("GATEWAY_PURE") else LIMIT
    ratios: list[float] = []
    for rnd in range(2 * ROUNDS):
        order = targets if rnd % 2 == 0 else targets[::-1]
        cost = {t.name: _cpu_per_request(t, token) for t in order}
        ratios.append(cost["gateway-memory"] / cost["naive"])
        if len(ratios) == ROUNDS and statistics.median(ratios) <= limit:
            break  # else as many rounds again: a regression lasts, a busy moment of the machine does not
    ratio = statistics.median(ratios)
    print(f"gateway/naive CPU per request, per round: {[f'{r:.2f}' for r in ratios]}; median {ratio:.2f}")
    assert ratio <= limit, f"the gateway costs {ratio:.2f}x the naive proxy's CPU per request (guard: {limit}x)"
