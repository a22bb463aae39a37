"""Helpers for the key and hostile-input tests: key files, hand-made tokens, a JWKS server."""
from __future__ import annotations

import base64
import functools
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
from aiohttp import web
from jwt.algorithms import get_default_algorithms

from gateway.auth.keys import generate_key


@functools.lru_cache(maxsize=64)
def _load_private(pem: bytes) -> Any:
    """Parsed once: loading an RSA key checks it, which takes a tenth of a second."""
    from cryptography.hazmat.primitives import serialization

    return serialization.load_pem_private_key(pem, None)


def b64(data: bytes | str) -> str:
    raw = data.encode() if isinstance(data, str) else data
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def raw_token(header: Any, payload: Any, signature: bytes = b"sig") -> str:
    """A token whose segments are exactly what the test says (JSON text, or raw bytes)."""
    def seg(part: Any) -> str:
        if isinstance(part, bytes):
            return b64(part)
        return b64(part if isinstance(part, str) else json.dumps(part))
    return f"{seg(header)}.{seg(payload)}.{b64(signature)}"


@dataclass
class KeyFiles:
    kid: str
    algorithm: str
    private_pem: bytes
    public_pem: bytes | None
    private_path: Path
    public_path: Path | None

    def spec(self, **extra: Any) -> dict[str, Any]:
        """A ``tokens.keys`` entry for this key."""
        if self.algorithm == "HS256":
            return {"kid": self.kid, "algorithm": "HS256", "secret_file": str(self.private_path), **extra}
        return {"kid": self.kid, "algorithm": self.algorithm, "private_key_file": str(self.private_path), **extra}

    @property
    def private_key(self) -> Any:
        if self.algorithm == "HS256":
            return self.private_pem
        return _load_private(self.private_pem)

    def public_jwk(self) -> dict[str, Any]:
        jwk = get_default_algorithms()[self.algorithm].to_jwk(self.private_key.public_key(), as_dict=True)
        return {**jwk, "kid": self.kid, "use": "sig"}


_GENERATED: dict[tuple[str, str | None], tuple[str, bytes, bytes | None]] = {}


def make_key(directory: Path, algorithm: str, kid: str | None = None, material: str | None = None) -> KeyFiles:
    """Key files in ``directory``; the material is generated once per (algorithm, material or kid)
    and session, because RSA generation is slow. Different ``material`` names give different keys."""
    cache_key = (algorithm, material or kid)
    if cache_key not in _GENERATED:
        _GENERATED[cache_key] = generate_key(algorithm)
    generated_kid, private, public = _GENERATED[cache_key]
    kid = kid or generated_kid
    directory.mkdir(parents=True, exist_ok=True)
    private_path = directory / f"{kid}.key"
    private_path.write_bytes(private)
    public_path = None
    if public is not None:
        public_path = directory / f"{kid}.pub"
        public_path.write_bytes(public)
    return KeyFiles(kid, algorithm, private, public, private_path, public_path)


def sign(key: KeyFiles, claims: dict[str, Any], **header: Any) -> str:
    headers = {"kid": key.kid, **header}
    return jwt.encode(claims, key.private_key, algorithm=key.algorithm, headers=headers)


def idp_claims(issuer: str, audience: str, lifetime: int = 300, **extra: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"iss": issuer, "aud": audience, "sub": "ext-user", "iat": now, "exp": now + lifetime, **extra}


@dataclass
class JwksServer:
    """A local identity provider's JWKS endpoint: counts requests, can fail or change its keys."""

    keys: list[dict[str, Any]]
    max_age: int | None = 300
    failing: bool = False
    requests: int = 0
    hits: list[str] = field(default_factory=list)  # every path requested, also by stray jku/x5u fetches

    def app(self) -> web.Application:
        async def handler(request: web.Request) -> web.Response:
            self.hits.append(request.path)
            if request.path != "/jwks":
                return web.json_response({"keys": []})
            self.requests += 1
            if self.failing:
                return web.Response(status=503, text="down")
            headers = {"Cache-Control": f"max-age={self.max_age}"} if self.max_age is not None else {}
            return web.json_response({"keys": self.keys}, headers=headers)

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handler)
        return app
