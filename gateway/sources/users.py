"""The users file: who may log in, with which argon2 hash, and which claims they carry.

Login costs the same whether the user exists or not: an unknown name is checked
against a dummy hash made with the same parameters, so timing reveals nothing.
"""
from __future__ import annotations

import asyncio
import functools
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from gateway.config import ConfigError, read_yaml
from gateway.config.tokens import LOGIN_CLAIMS, TOKEN_CLAIMS

__all__ = ["RESERVED_CLAIMS", "User", "UserDirectory", "dummy_hash", "hash_password", "load_users"]

# Claims the gateway sets itself; a users file cannot override them.
RESERVED_CLAIMS = TOKEN_CLAIMS | LOGIN_CLAIMS | {"sub"}  # a user's claims cannot override who they are, nor how they logged in

_hasher = PasswordHasher()
# Each argon2id verification holds 64 MiB (argon2-cffi's default memory cost) and
# a core: a small pool of its own bounds both, whatever a login storm does, and
# leaves the default executor free for everything else.
_HASHING = ThreadPoolExecutor(max_workers=2, thread_name_prefix="argon2")


@functools.cache
def dummy_hash() -> str:
    """The hash a missing user's login is checked against: the cost of a real check, computed once per process.

    Made on first use (the server makes it before it listens, so no login waits
    for it), not at load: ``gateway check`` never needs it.
    """
    return hash_password("dummy password that nobody has")


def hash_password(password: str) -> str:
    """An argon2id hash with argon2-cffi's recommended parameters."""
    return _hasher.hash(password)


@dataclass(frozen=True, slots=True)
class User:
    username: str
    password_hash: str = field(repr=False)
    claims: Mapping[str, Any]
    disabled: bool = False
    rehashed_from: str | None = field(default=None, repr=False)  # the hash this login's rehash_on_login replaced


class UserDirectory:
    """Users by name, plus lookup by an alias claim such as ``email`` for compat logins."""

    def __init__(self, users: Mapping[str, User]) -> None:
        self._users = dict(users)

    def __len__(self) -> int:
        return len(self._users)

    def names(self) -> list[str]:
        return list(self._users)

    def hashes(self) -> list[str]:
        return [user.password_hash for user in self._users.values()]

    def get(self, username: str, *, with_disabled: bool = False) -> User | None:
        user = self._users.get(username)
        return None if user is None or (user.disabled and not with_disabled) else user

    def find(self, login: str, by: str = "username", *, with_disabled: bool = False) -> User | None:
        if by == "username":
            return self.get(login, with_disabled=with_disabled)
        for user in self._users.values():
            if (with_disabled or not user.disabled) and user.claims.get(by) == login:
                return user
        return None

    async def authenticate(self, login: str, password: str, by: str = "username") -> User | None:
        """The user if the password matches; argon2 runs in a thread so the loop keeps serving."""
        user = self.find(login, by)
        stored = user.password_hash if user else dummy_hash()
        ok = await asyncio.get_running_loop().run_in_executor(_HASHING, _verify, stored, password)
        return user if ok and user is not None else None


def _verify(stored_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(stored_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def _parse_user(name: Any, entry: Any, where: str, problems: list[str]) -> User | None:
    if not isinstance(name, str) or not name or len(name) > 256:
        problems.append(f"{where}: a username must be a non-empty string")
        return None
    if not isinstance(entry, dict):
        problems.append(f"{where}: must be a mapping with password_hash and claims")
        return None
    unknown = set(entry) - {"password_hash", "claims", "disabled"}
    if unknown:
        problems.append(f"{where}: unknown keys {sorted(unknown)}")
    pw_hash = entry.get("password_hash")
    if not isinstance(pw_hash, str) or not pw_hash.startswith("$argon2"):
        problems.append(f"{where}.password_hash: not an argon2 hash (make one with `gateway hash-password`)")
    claims = entry.get("claims") or {}
    if not isinstance(claims, dict):
        problems.append(f"{where}.claims: must be a mapping")
        claims = {}
    clash = sorted(RESERVED_CLAIMS & set(claims))
    if clash:
        problems.append(f"{where}.claims: {clash} are set by the gateway and cannot be overridden")
    return User(name, str(pw_hash), MappingProxyType(dict(claims)), bool(entry.get("disabled", False)))


def load_users(path: Path) -> UserDirectory:
    raw = read_yaml(path)
    where = f"users_file({path.name})"
    if not isinstance(raw, dict) or not isinstance(raw.get("users"), dict):
        raise ConfigError([f"{where}: must be a mapping with a `users:` mapping inside"])
    problems: list[str] = []
    users = {}
    for name, entry in raw["users"].items():
        user = _parse_user(name, entry, f"{where}.users.{name}", problems)
        if user:
            users[user.username] = user
    if problems:
        raise ConfigError(problems)
    return UserDirectory(users)
