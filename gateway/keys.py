"""Signing keys: which key signs new tokens, and which keys a token may be checked with.

A token names its key with ``kid``; the key, not the token, decides the
algorithm (RFC 8725 §3.1), so a token cannot talk its way into ``none`` or into
HS256 keyed with a public key.
"""
from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping

from .config import Tokens

__all__ = ["KeyRing", "SigningKey"]


@dataclass(frozen=True, slots=True)
class SigningKey:
    kid: str
    algorithm: str
    private: Any = field(repr=False)
    public: Any = field(repr=False)


def hmac_kid(secret: bytes) -> str:
    """A stable kid that names a shared secret without revealing anything about it."""
    return "hs-" + hmac.new(secret, b"gateway key id", hashlib.sha256).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class KeyRing:
    active: SigningKey
    keys: Mapping[str, SigningKey]

    @classmethod
    def from_config(cls, tokens: Tokens) -> "KeyRing":
        secret = tokens.secret.get_secret_value().encode()
        key = SigningKey(hmac_kid(secret), tokens.algorithm, secret, secret)
        return cls(key, MappingProxyType({key.kid: key}))

    def get(self, kid: object) -> SigningKey | None:
        return self.keys.get(kid) if isinstance(kid, str) else None
