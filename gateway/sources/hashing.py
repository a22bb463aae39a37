"""Password checks off the event loop, in one bounded pool shared by every source.

argon2id holds 64 MiB and a core per check; bcrypt, PBKDF2 and scrypt are CPU
work too. The users file's pool (``gateway.users``) is reused, so a login storm
on any source is bounded by the same two threads. Plain argon2 hashes go
through the users file's own check, so both paths verify them identically.
"""
from __future__ import annotations

import asyncio
import time

import gateway.sources.users as users
from gateway.sources.hashes import cost_class, verify_password

__all__ = ["check_cost", "verify_off_loop"]

# cost class -> the fastest check of it seen in this process, seconds (the least noisy estimate of its
# cost: a check can only be slowed down). Written by the hashing threads, read by the chain's decoy.
_COSTS: dict[str, float] = {}


def check_cost(encoded: str | None) -> float | None:
    """What checking a password against ``encoded`` costs, once a hash of its class was checked; 0 for ``never``."""
    key = cost_class(encoded)
    return 0.0 if key == "never" else _COSTS.get(key)


def _check(encoded: str | None, password: str) -> bool:
    started = time.perf_counter()
    if encoded is not None and encoded.startswith("$argon2"):
        ok = users._verify(encoded, password)
    else:
        ok = verify_password(encoded, password)
    key, spent = cost_class(encoded), time.perf_counter() - started
    if key != "never":
        _COSTS[key] = min(spent, _COSTS.get(key, spent))
    return ok


async def verify_off_loop(encoded: str | None, password: str) -> bool:
    return await asyncio.get_running_loop().run_in_executor(users._HASHING, _check, encoded, password)
