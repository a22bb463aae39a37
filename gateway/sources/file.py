"""The ``file`` source: the users file (``users_file:`` or ``users: [- file: ...]``), argon2id hashes."""
from __future__ import annotations

from pathlib import Path

from gateway.sources.base import Candidate
from gateway.sources.hashing import verify_off_loop
from gateway.sources.users import User, UserDirectory, load_users

__all__ = ["FileSource"]


class FileSource:
    kind = "file"
    timeout = 60.0  # in memory: only the hash takes time
    cache_ttl = 0.0
    rereads = True

    def __init__(self, directory: UserDirectory, name: str = "file") -> None:
        self.directory = directory
        self.name = name

    @classmethod
    def from_path(cls, path: Path, name: str = "file") -> "FileSource":
        return cls(load_users(path), name)

    async def find(self, login: str, by: str) -> Candidate | None:
        user = self.directory.find(login, by, with_disabled=True)  # a disabled user is known here: refused here
        if user is None:
            return None

        async def check(password: str) -> User | None:
            ok = await verify_off_loop(user.password_hash, password)
            return user if ok and not user.disabled else None

        return Candidate(check, user.password_hash)

    async def lookup(self, username: str) -> User | None:
        return self.directory.get(username, with_disabled=True)

    async def probe(self) -> str:
        return f"{len(self.directory)} users"

    async def close(self) -> None:
        return None

    def names(self) -> list[str]:
        return self.directory.names()

    def held_hashes(self) -> list[str]:
        return self.directory.hashes()

    def __len__(self) -> int:
        return len(self.directory)
