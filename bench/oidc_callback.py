"""What the OIDC callback adds to a sign-in: ``.venv/bin/python -m bench.oidc_callback [--logins N]``.

The real OpenID Provider of the tests (oidc-provider, ``tests/support/oidc.py``; its node packages
installed by ``scripts/install-test-deps.sh``) and the gateway (in process, on a real socket, memory
store, uvloop when installed) on loopback. For each of N sign-ins, a plain aiohttp client walks the
gateway's login redirect and the provider's pages (not measured), then times the one request that is
the callback: ``GET /auth/oidc/<provider>/callback?code=...&state=...``, in which the gateway checks
the state cookie, exchanges the code at the provider's token endpoint (PKCE, client_secret_basic),
validates the ID token (RS256 against the cached JWKS) and issues its own session (tokens, cookies).

To split that time, the same client also does N code exchanges of its own at the provider's token
endpoint (the same client, PKCE and authentication), timed the same way, on a kept-alive connection as
the gateway makes them (one pooled HTTP client per process): the provider's share. The gateway's own
work is the difference of the medians. The same exchanges on a new connection each time show what
pooling saves. The first callback (discovery and JWKS not yet
cached) is reported apart and left out of the percentiles.

Writes ``bench/results/oidc_callback.md``.
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import os
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp  # noqa: E402
import yaml  # noqa: E402
from aiohttp import web  # noqa: E402
from yarl import URL  # noqa: E402

from gateway.app import create_app  # noqa: E402
from gateway.config import parse_config  # noqa: E402
from gateway.server.listeners import run  # noqa: E402
from gateway.sources.users import hash_password  # noqa: E402
from tests.support.oidc import OidcClient, OidcProvider, OidcUser, client_session, sign_in  # noqa: E402
from tests.support.processes import free_port  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SECRET = "bench-client-secret-0123456789abcdef"
USER = OidcUser("alice", "alice-pw", email="alice@example.com", groups=("staff",))


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def summary(samples: list[float]) -> dict[str, float]:
    return {"p50": statistics.median(samples) * 1000, "p99": percentile(samples, 0.99) * 1000}


async def one_callback(session: aiohttp.ClientSession, gateway: str) -> float:
    """One sign-in through the gateway; returns how long its callback took."""
    back = await sign_in(session, f"{gateway}/auth/oidc/bench/login?next=/done", USER.sub, USER.password)
    started = time.perf_counter()
    async with session.get(back, allow_redirects=False) as resp:
        await resp.read()
        elapsed = time.perf_counter() - started
        # signed in: a 302 to next, or (SameSite=Strict cookies, the default) the page that continues there
        assert resp.status in (200, 302) and "gw_access" in resp.cookies, (resp.status, await resp.text())
    return elapsed


async def one_exchange(session: aiohttp.ClientSession, meta: dict[str, Any], redirect: str, fresh: bool) -> float:
    """The provider's share: the same code exchange by a plain client on the session's kept-alive connection,
    as the gateway makes it; ``fresh``: on a new connection instead."""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    url = URL(meta["authorization_endpoint"]).with_query(
        client_id="gateway", response_type="code", scope="openid email profile", redirect_uri=redirect,
        state=secrets.token_urlsafe(16), nonce=secrets.token_urlsafe(16), code_challenge=challenge,
        code_challenge_method="S256")
    back = await sign_in(session, str(url), USER.sub, USER.password)
    form = {"grant_type": "authorization_code", "code": back.query["code"], "redirect_uri": redirect,
            "code_verifier": verifier}
    auth = "Basic " + base64.b64encode(f"gateway:{SECRET}".encode()).decode()
    started = time.perf_counter()
    async with contextlib.AsyncExitStack() as stack:
        http = await stack.enter_async_context(aiohttp.ClientSession()) if fresh else session
        async with http.post(meta["token_endpoint"], data=form, headers={"Authorization": auth}) as resp:
            await resp.read()
            elapsed = time.perf_counter() - started
            assert resp.status == 200, await resp.text()
    return elapsed


async def measure(session: aiohttp.ClientSession, op: OidcProvider, gateway: str, redirect: str,
                  logins: int) -> dict[str, Any]:
    """Interleaved, so the three series see the same load: a callback, a fresh exchange, a kept-alive one."""
    first = await one_callback(session, gateway)
    async with session.get(f"{op.issuer}/.well-known/openid-configuration") as resp:
        meta: dict[str, Any] = await resp.json()
    series: dict[str, list[float]] = {"callback": [], "fresh": [], "kept": []}
    for _ in range(logins):
        series["callback"].append(await one_callback(session, gateway))
        series["fresh"].append(await one_exchange(session, meta, redirect, fresh=True))
        series["kept"].append(await one_exchange(session, meta, redirect, fresh=False))
    return {"first": first, **series}


async def main(logins: int) -> None:
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        port = free_port()
        gateway = f"http://127.0.0.1:{port}"
        redirect = f"{gateway}/auth/oidc/bench/callback"
        async with OidcProvider(tmp, [OidcClient("gateway", [redirect], client_secret=SECRET)], [USER]) as op:
            users = tmp / "users.yaml"
            users.write_text(yaml.safe_dump({"users": {"bob": {"password_hash": hash_password("pw"), "claims": {}}}}))
            raw = {"tokens": {"secret": "b" * 40}, "users_file": str(users), "store": {"backend": "memory"},
                   "public_url": gateway, "cookies": {"enabled": True, "secure": False},  # aiohttp sends no Secure cookie over http
                   "limits": {"max_requests_per_client": 100_000},
                   "oidc": {"providers": {"bench": {"issuer": op.issuer, "client_id": "gateway", "client_secret": SECRET,
                                                    "claims": {"email": "email", "groups": "groups"}}}},
                   "routes": [{"name": "app", "prefix": "/done", "upstream": "http://127.0.0.1:9", "auth": "none"}]}
            runner = web.AppRunner(create_app(parse_config(raw, tmp)), access_log=None)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", port).start()
            try:
                async with client_session() as session:
                    result = await measure(session, op, gateway, redirect, logins)
            finally:
                await runner.cleanup()
    cb, tk, ka, first = summary(result["callback"]), summary(result["fresh"]), summary(result["kept"]), result["first"]
    own = cb["p50"] - ka["p50"]
    loop = "uvloop" if "uvloop" in type(asyncio.get_running_loop()).__module__ else "asyncio"
    text = "\n".join([
        "# The OIDC callback's added latency",
        "",
        f"`python -m bench.oidc_callback --logins {logins}`: oidc-provider 8.8.1 (node {os.popen('node --version').read().strip()}) "
        f"and the gateway in process ({loop}, memory store, cookie mode) on loopback; {logins} sign-ins, each "
        "callback timed alone (the provider's pages walked before, not timed); then as many code exchanges by a "
        "plain client at the provider's token endpoint, on a new connection each time and on a kept-alive one, "
        "the three series interleaved. Shared machine (2 cores, other jobs running): compare "
        "rows of one run, not runs.",
        "",
        "| what | p50 | p99 |",
        "|---|---|---|",
        f"| callback, end to end (state cookie, code exchange, ID token, session) | {cb['p50']:.1f} ms | {cb['p99']:.1f} ms |",
        f"| the provider's token endpoint alone, kept-alive connection (as the gateway calls it) | {ka['p50']:.1f} ms | "
        f"{ka['p99']:.1f} ms |",
        f"| the same on a new connection each time | {tk['p50']:.1f} ms | {tk['p99']:.1f} ms |",
        f"| the gateway's own work (difference of the medians) | {own:.1f} ms | |",
        f"| first callback (discovery + JWKS fetched, not cached yet) | {first * 1000:.1f} ms | |",
        "",
        "On loopback a new connection costs next to nothing. Against a remote provider over TLS it would add a "
        "TCP and TLS handshake to every callback; the gateway avoids that with one kept-alive HTTP client per "
        "process for all provider calls (`gateway/auth/oidc.py`).",
        "",
    ])
    out = ROOT / "bench/results/oidc_callback.md"
    out.write_text(text)
    print(text)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--logins", type=int, default=200, help="timed sign-ins (and as many direct code exchanges)")
    run(main(parser.parse_args().logins))
