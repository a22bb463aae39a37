"""Talking to the targets outside wrk: logins, token variants, sanity checks.

Logins are deliberately slow (argon2id, ~80 ms of CPU each), so refresh
tokens for the storm are minted up front with bounded concurrency; the storm
itself then measures only refresh.
"""
from __future__ import annotations

import asyncio
import base64
import json
import time
import urllib.error
import urllib.request
from typing import Any

import aiohttp
import jwt

from .configs import PASSWORD, USERNAME

__all__ = ["login", "mint_logins", "local_token", "tamper_signature", "expired_token",
           "get_json", "check_identity"]


def _post_json(url: str, payload: dict[str, Any], timeout: float = 30) -> dict[str, Any]:
    req = urllib.request.Request(url, data=json.dumps(payload).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return dict(json.loads(resp.read()))


def login(base: str, path: str = "/auth/token") -> dict[str, Any]:
    """One POST /auth/token; the response has ``access`` and ``refresh``."""
    return _post_json(base + path, {"username": USERNAME, "password": PASSWORD})


async def _mint(base: str, n: int, concurrency: int, path: str) -> list[dict[str, Any]]:
    sem = asyncio.Semaphore(concurrency)
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        async def one() -> dict[str, Any]:
            async with sem, session.post(base + path, json={"username": USERNAME, "password": PASSWORD}) as r:
                if r.status != 200:
                    raise RuntimeError(f"login failed: {r.status} {await r.text()}")
                return dict(await r.json())
        return await asyncio.gather(*(one() for _ in range(n)))


def mint_logins(base: str, n: int, concurrency: int = 4, path: str = "/auth/token") -> tuple[list[dict[str, Any]], float]:
    """``n`` logins (each a new refresh family) and the login rate achieved, per second."""
    start = time.perf_counter()
    pairs = asyncio.run(_mint(base, n, concurrency, path))
    return pairs, n / (time.perf_counter() - start)


def local_token(secret: str, lifetime: int = 7200, **overrides: Any) -> str:
    """A token shaped like the gateway's, for developing without it (and for expired tokens)."""
    now = int(time.time())
    claims = {"iss": "gateway", "aud": "gateway-clients", "sub": USERNAME, "iat": now, "nbf": now,
              "exp": now + lifetime, "jti": "0" * 32, "fid": "1" * 32, "token_type": "access",
              "roles": ["admin", "user"], "email": "alice@example.com", "tenant": "acme"}
    claims.update(overrides)
    return jwt.encode(claims, secret, algorithm="HS256")


def tamper_signature(token: str) -> str:
    """Same header and claims, different (well-formed) signature: fails only at the HMAC check."""
    head, body, sig = token.split(".")
    raw = bytearray(base64.urlsafe_b64decode(sig + "=" * (-len(sig) % 4)))
    raw[0] ^= 0xFF
    return f"{head}.{body}." + base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()


def expired_token(valid: str, secret: str) -> str:
    """The valid token's header and claims, re-signed with exp two hours ago (past any leeway)."""
    header = jwt.get_unverified_header(valid)
    claims = jwt.decode(valid, options={"verify_signature": False})
    claims["exp"] = int(time.time()) - 7200
    claims["iat"] = claims["nbf"] = claims["exp"] - 900
    return jwt.encode(claims, secret, algorithm="HS256", headers={"kid": header.get("kid")})


def get_json(url: str, token: str | None) -> tuple[int, Any]:
    """GET with an optional bearer token; (status, parsed JSON or text)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    req = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode(errors="replace")


def check_identity(url: str, token: str, expect_identity: bool) -> None:
    """Refuse to benchmark a target that does not answer 200 (and inject identity if it should).

    A proxy that quickly answers 401 would otherwise post a splendid RPS figure.
    """
    status, body = get_json(url, token)
    if status != 200:
        raise RuntimeError(f"{url} answered {status}: {body}")
    identity = body.get("identity", {}) if isinstance(body, dict) else {}
    got = {k.lower(): v for k, v in identity.items()}
    if expect_identity and got.get("x-user-id") != USERNAME:
        raise RuntimeError(f"{url}: identity headers not injected: {body}")
