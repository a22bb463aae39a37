"""Password checks off the event loop, in one bounded pool shared by every source.

argon2id holds 64 MiB and a core per check; bcrypt, PBKDF2 and scrypt are CPU
work too. The users file's pool (``gateway.users``) is reused, so a login storm
on any source is bounded by the same two threads. Plain argon2 hashes go
through the users file's own check, so both paths verify them identically.
"""
from __future__ import annotations

import asyncio

import gateway.sources.users as users
from gateway.sources.hashes import verify_password

__all__ = ["verify_off_loop"]


def _check(encoded: str | None, password: str) -> bool:
    if encoded is not None and encoded.startswith("$argon2"):
        return users._verify(encoded, password)
    return verify_password(encoded, password)


async def verify_off_loop(encoded: str | None, password: str) -> bool:
    return await asyncio.get_running_loop().run_in_executor(users._HASHING, _check, encoded, password)
