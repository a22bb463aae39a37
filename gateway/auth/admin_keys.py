"""Named admin keys: who may call the admin API, and the name every admin action is logged with.

A key is 32 random bytes (256 bits, URL-safe base64 behind a ``gwadm_`` prefix), so the configuration holds its
SHA-256 only: a fast unsalted hash is enough for a key nobody chose, since no guess list or precomputed table
covers a 256-bit random space (a slow password hash protects low-entropy human passwords, which these are not).
A presented key is hashed and compared with every configured digest in constant time.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from pathlib import Path

from gateway.config import ConfigError
from gateway.config.ops import Admin, admin_key_digest, admin_key_name

__all__ = ["KEY_PREFIX", "MAX_KEY_LENGTH", "AdminKeys", "generate_admin_key", "key_digest"]

KEY_PREFIX = "gwadm_"
MAX_KEY_LENGTH = 256  # a presented key longer than this is refused before hashing


def key_digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def generate_admin_key() -> tuple[str, str]:
    """A new key and its SHA-256 (hex): the key is shown once, the digest goes in the configuration."""
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    return key, key_digest(key)


@dataclass(frozen=True, slots=True)
class AdminKeys:
    """The configured keys as (name, digest) pairs; empty means the admin API is off."""

    entries: tuple[tuple[str, bytes], ...] = ()

    def __bool__(self) -> bool:
        return bool(self.entries)

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self.entries]

    def identify(self, presented: str) -> str | None:
        """The name of the key ``presented`` is, or None; every digest is compared, in constant time each."""
        if not presented or len(presented) > MAX_KEY_LENGTH:
            return None
        digest = bytes.fromhex(key_digest(presented))
        found = None
        for name, known in self.entries:
            if hmac.compare_digest(digest, known) and found is None:
                found = name
        return found

    @classmethod
    def from_config(cls, admin: Admin | None) -> "AdminKeys":
        """The keys of ``admin.keys`` and ``admin.keys_file``; ConfigError (file:line, value, what is expected)."""
        if admin is None:
            return cls()
        pairs = [(key.name, key.sha256, "admin.keys") for key in admin.keys]
        if admin.keys_file is not None:
            pairs += _read_file(admin.keys_file)
        seen: dict[str, str] = {}
        problems = []
        for name, _, where in pairs:
            if name in seen:
                problems.append(f"{where}: admin key name {name!r} is also given at {seen[name]}; each name once "
                                "(audit events name the key)")
            seen.setdefault(name, where)
        if problems:
            raise ConfigError(problems)
        return cls(tuple((name, bytes.fromhex(digest)) for name, digest, _ in pairs))


def _read_file(path: Path) -> list[tuple[str, str, str]]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"admin.keys_file: cannot read {path} ({type(exc).__name__}); expected a readable UTF-8 "
                           "file of `NAME SHA256` lines"]) from None
    pairs, problems = [], []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        where = f"{path}:{number}"
        fields = line.split()
        if len(fields) != 2:
            problems.append(f"{where}: {line[:80]!r}: expected `NAME SHA256` (two fields, e.g. the line "
                            "`gateway admin-key generate NAME` prints)")
            continue
        try:
            pairs.append((admin_key_name(fields[0]), admin_key_digest(fields[1]), where))
        except ValueError as exc:
            problems.append(f"{where}: {exc}")
    if problems:
        raise ConfigError(problems)
    return pairs
