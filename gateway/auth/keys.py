"""Signing keys: which key signs new tokens, and which keys a token may be checked with.

A token names its key with ``kid``; the key, not the token, decides the
algorithm (RFC 8725 §3.1), so a token cannot talk its way into ``none`` or into
HS256 keyed with a public key.

Rotation is a sequence of config changes, each followed by a reload: add the
new key (verify-only), make it active, and drop the old one once the last
token it signed has expired (``refresh_lifetime`` + ``leeway`` after it stopped
signing). Every asymmetric key of the ring is published in the JWKS, so
upstreams and clients can verify tokens of both keys during the overlap.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import get_default_algorithms

from gateway.config import ConfigError, KeySpec, Tokens
from gateway.config.tokens import check_hs256_secret

__all__ = ["KeyRing", "SigningKey", "generate_key", "jwk_thumbprint"]

MIN_RSA_BITS = 2048
_PRIVATE_TYPES: dict[str, type] = {
    "RS256": rsa.RSAPrivateKey,
    "ES256": ec.EllipticCurvePrivateKey,
    "EdDSA": ed25519.Ed25519PrivateKey,
}
_PUBLIC_TYPES: dict[str, type] = {
    "RS256": rsa.RSAPublicKey,
    "ES256": ec.EllipticCurvePublicKey,
    "EdDSA": ed25519.Ed25519PublicKey,
}
# RFC 7638 §3.2: the members that identify a key, per key type.
_THUMBPRINT_MEMBERS = {"RSA": ("e", "kty", "n"), "EC": ("crv", "kty", "x", "y"), "OKP": ("crv", "kty", "x")}


@dataclass(frozen=True, slots=True)
class SigningKey:
    """One key; ``private`` is None for a verify-only key."""

    kid: str
    algorithm: str
    private: Any = field(repr=False)
    public: Any = field(repr=False)

    @property
    def symmetric(self) -> bool:
        return self.algorithm.startswith("HS")

    def public_jwk(self) -> dict[str, Any] | None:
        """The RFC 7517 public key, or None for a shared secret (never published)."""
        if self.symmetric:
            return None
        jwk = get_default_algorithms()[self.algorithm].to_jwk(self.public, as_dict=True)
        return {**jwk, "kid": self.kid, "alg": self.algorithm, "use": "sig"}


def hmac_kid(secret: bytes) -> str:
    """A stable kid that names a shared secret without revealing anything about it."""
    return "hs-" + hmac.new(secret, b"gateway key id", hashlib.sha256).hexdigest()[:16]


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwk_thumbprint(jwk: Mapping[str, Any]) -> str:
    """The RFC 7638 SHA-256 thumbprint of a public JWK: a kid anyone can recompute."""
    members = {name: jwk[name] for name in _THUMBPRINT_MEMBERS[jwk["kty"]]}
    canonical = json.dumps(members, separators=(",", ":"), sort_keys=True).encode()
    return _b64url(hashlib.sha256(canonical).digest())


@dataclass(frozen=True, slots=True)
class KeyRing:
    active: SigningKey
    keys: Mapping[str, SigningKey]

    @classmethod
    def from_config(cls, tokens: Tokens) -> "KeyRing":
        """Read every key's material; any problem is a ConfigError naming the key."""
        if not tokens.keys:
            assert tokens.secret is not None  # guaranteed by config validation
            secret = tokens.secret.get_secret_value().encode()
            key = SigningKey(hmac_kid(secret), "HS256", secret, secret)
            return cls(key, MappingProxyType({key.kid: key}))
        problems: list[str] = []
        loaded: dict[str, SigningKey] = {}
        for i, spec in enumerate(tokens.keys):
            try:
                loaded[spec.kid] = _load(spec)
            except ValueError as exc:
                problems.append(f"tokens.keys[{i}] ({spec.kid}): {exc}")
        if problems:
            raise ConfigError(problems)
        active = loaded[tokens.signing_kid] if tokens.signing_kid else next(loaded[k.kid] for k in tokens.keys if k.active)
        return cls(active, MappingProxyType(loaded))

    def get(self, kid: object) -> SigningKey | None:
        return self.keys.get(kid) if isinstance(kid, str) else None

    def jwks(self) -> dict[str, Any]:
        """The public keys (RFC 7517 §5), active key first; shared secrets are never listed."""
        ordered = [self.active, *(k for k in self.keys.values() if k is not self.active)]
        return {"keys": [jwk for k in ordered if (jwk := k.public_jwk()) is not None]}


def _read(path: Path | None, env: str | None, what: str) -> bytes | None:
    if path is not None:
        try:
            return path.read_bytes()
        except OSError as exc:
            raise ValueError(f"{what}: cannot read {path} ({exc.strerror})") from None
    if env is not None:
        value = os.environ.get(env)
        if not value:
            raise ValueError(f"{what}: environment variable {env} is not set")
        if "\n" not in value and "\\n" in value:  # PEM squeezed onto one line
            value = value.replace("\\n", "\n")
        return value.encode()
    return None


def _load(spec: KeySpec) -> SigningKey:
    if spec.algorithm == "HS256":
        secret = spec.secret.get_secret_value().encode() if spec.secret else _read(spec.secret_file, None, "secret_file")
        assert secret is not None
        secret = secret.rstrip(b"\r\n")
        check_hs256_secret(secret)
        return SigningKey(spec.kid, "HS256", secret, secret)
    private_pem = _read(spec.private_key_file, spec.private_key_env, "private key")
    public_pem = _read(spec.public_key_file, spec.public_key_env, "public key")
    private = _parse(private_pem, spec.algorithm, private=True) if private_pem else None
    public = _parse(public_pem, spec.algorithm, private=False) if public_pem else None
    if private is not None:
        derived = private.public_key()
        if public is not None and _spki(public) != _spki(derived):
            raise ValueError("the public key does not belong to the private key")
        public = derived
    return SigningKey(spec.kid, spec.algorithm, private, public)


def _spki(public: Any) -> bytes:
    der: bytes = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return der


def _parse(pem: bytes, algorithm: str, *, private: bool) -> Any:
    what = "private key" if private else "public key"
    try:
        key: Any = serialization.load_pem_private_key(pem, None) if private else serialization.load_pem_public_key(pem)
    except TypeError:
        raise ValueError(f"{what}: encrypted PEM keys are not supported") from None
    except (ValueError, UnsupportedAlgorithm):
        raise ValueError(f"{what}: not a PEM {what}") from None
    expected = (_PRIVATE_TYPES if private else _PUBLIC_TYPES)[algorithm]
    if not isinstance(key, expected):
        raise ValueError(f"{what}: not a key for {algorithm}")
    if isinstance(key, (rsa.RSAPrivateKey, rsa.RSAPublicKey)) and key.key_size < MIN_RSA_BITS:
        raise ValueError(f"{what}: RSA keys need at least {MIN_RSA_BITS} bits")
    if isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)) and key.curve.name != "secp256r1":
        raise ValueError(f"{what}: ES256 needs a P-256 key")
    return key


def generate_key(algorithm: str) -> tuple[str, bytes, bytes | None]:
    """A new key: ``(kid, private material, public PEM)``; the kid is the RFC 7638 thumbprint.

    For HS256 the private material is a 256-bit random secret and there is no public part.
    """
    if algorithm == "HS256":
        secret = _b64url(secrets.token_bytes(32)).encode()
        return hmac_kid(secret), secret, None
    if algorithm == "RS256":
        private: Any = rsa.generate_private_key(public_exponent=65537, key_size=3072)
    elif algorithm == "ES256":
        private = ec.generate_private_key(ec.SECP256R1())
    elif algorithm == "EdDSA":
        private = ed25519.Ed25519PrivateKey.generate()
    else:
        raise ValueError(f"unsupported algorithm {algorithm!r}")
    jwk = get_default_algorithms()[algorithm].to_jwk(private.public_key(), as_dict=True)
    private_pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return jwk_thumbprint(jwk), private_pem, public_pem
