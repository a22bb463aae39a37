"""Secrets at rest: AES-256-GCM under a key ring, the key id inside each ciphertext so keys can rotate.

A sealed value reads ``v1.<key id>.<base64url(nonce || ciphertext || tag)>``. The
associated data binds it to its row (subject and kind): a ciphertext copied to
another user's row does not open. The first key of the ring seals; every key
opens, so a new key goes first and the old one stays until ``needs_reseal`` has
moved every row (the gateway re-seals a secret whenever it reads one sealed
under an older key).
"""
from __future__ import annotations

import base64
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from gateway.config.factors import SealingKey

__all__ = ["SealError", "Sealer"]

VERSION = "v1"
NONCE = 12


class SealError(Exception):
    """A sealed value that does not open: unknown key, tampered, or moved to another row."""


def _derive(secret: str) -> AESGCM:
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"gateway credentials v1").derive(secret.encode())
    return AESGCM(key)


class Sealer:
    def __init__(self, keys: tuple[SealingKey, ...]) -> None:
        if not keys:
            raise ValueError("a key ring needs at least one key")
        self._ring = {k.id: _derive(k.secret.get_secret_value()) for k in keys}
        self.active = keys[0].id

    def seal(self, plaintext: bytes, context: str) -> str:
        nonce = os.urandom(NONCE)
        sealed = self._ring[self.active].encrypt(nonce, plaintext, context.encode())
        return f"{VERSION}.{self.active}.{base64.urlsafe_b64encode(nonce + sealed).decode().rstrip('=')}"

    def open(self, value: str, context: str) -> bytes:
        version, _, rest = value.partition(".")
        kid, _, body = rest.partition(".")
        aead = self._ring.get(kid)
        if version != VERSION or aead is None:
            raise SealError(f"sealed under an unknown key {kid!r}" if version == VERSION else "not a sealed value")
        try:
            raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
            return aead.decrypt(raw[:NONCE], raw[NONCE:], context.encode())
        except (InvalidTag, ValueError):
            raise SealError("the sealed value does not open (tampered, or another row's)") from None

    def needs_reseal(self, value: str) -> bool:
        """True when ``value`` was sealed under a key other than the active one."""
        return value.split(".", 2)[1:2] != [self.active]
