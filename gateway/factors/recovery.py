"""Recovery codes: a set shown once, stored as argon2 hashes, each usable once.

A code is 16 letters of the RFC 4648 base32 alphabet in four groups (``abcd-efgh-ijkl-mnop``,
80 bits), so guessing one within the second-factor throttle is hopeless even with
a cheap hash; argon2 still keeps a stolen database from yielding usable codes. A
code is checked against every hash of the user (no early exit: the time does not
tell which one matched), on a worker thread. Spending it is the database's
single-row ``DELETE``.
"""
from __future__ import annotations

import asyncio
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

__all__ = ["generate", "hash_codes", "normalise", "verify"]

ALPHABET = "abcdefghijklmnopqrstuvwxyz234567"
# Lighter than a password's parameters: the codes carry 80 bits of their own; still too slow to enumerate.
_HASHER = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)


def generate(count: int) -> list[str]:
    raw = ["".join(secrets.choice(ALPHABET) for _ in range(16)) for _ in range(count)]
    return ["-".join(code[i:i + 4] for i in range(0, 16, 4)) for code in raw]


def normalise(code: object) -> str | None:
    """The 16 letters of a code as typed (case, spaces and dashes ignored), or None."""
    if not isinstance(code, str) or len(code) > 64:
        return None
    letters = code.lower().replace("-", "").replace(" ", "")
    return letters if len(letters) == 16 and all(c in ALPHABET for c in letters) else None


def _hash_all(codes: list[str]) -> list[tuple[str, str]]:
    return [(f"{i + 1:02d}", _HASHER.hash(normalise(code) or "")) for i, code in enumerate(codes)]


async def hash_codes(codes: list[str]) -> list[tuple[str, str]]:
    """(name, hash) for each code, on a worker thread."""
    return await asyncio.to_thread(_hash_all, codes)


def _match(code: str, hashes: list[tuple[str, str]]) -> str | None:
    found = None
    for name, hashed in hashes:
        try:
            if _HASHER.verify(hashed, code) and found is None:
                found = name
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            continue
    return found


async def verify(code: object, hashes: list[tuple[str, str]]) -> str | None:
    """The name of the stored code that ``code`` is, or None."""
    letters = normalise(code)
    if letters is None or not hashes:
        return None
    return await asyncio.to_thread(_match, letters, hashes)
