"""``bench.ab --instructions``: callgrind counts a gateway's instructions per request, the same for the same work.

A gateway of this checkout starts under callgrind with the instrumentation off (bench/callgrind.py), is switched
on, and counts two batches of the same requests: the counts must be real (a request is tens of thousands of
instructions at least; a count of the wrong process or of nothing is not) and agree closely, which is what lets
an A/B of two trees resolve a lever of a fraction of a per cent (bench/README.md).
"""
from __future__ import annotations

import shutil

import pytest

from bench import callgrind, client
from bench.ab import _start
from bench.stack import ROOT, Stack

pytestmark = pytest.mark.skipif(not shutil.which("callgrind_control"), reason="valgrind comes from "
                                "scripts/install-bench-deps.sh")


def test_two_counts_of_the_same_requests_agree():
    stack = Stack()
    try:
        upstream = stack.upstream()
        out = stack.tmp / "gateway.callgrind"
        gateway = _start(stack, "gateway", str(ROOT), upstream, None, cached=False, decision=False, compiled=True,
                         prefix=callgrind.argv(out))
        token = str(client.login(gateway.base)["access"])
        assert gateway.proc is not None
        counter = callgrind.Counter(gateway.proc.pid, out)
        counter.on()
        callgrind.requests(gateway.api_url, token, 50)  # warm-up, instrumented
        first, second = (counter.count(100, gateway.api_url, token) for _ in range(2))
    finally:
        stack.close()
    assert first > 20_000 and second > 20_000
    assert abs(first - second) / first < 0.02, (first, second)
