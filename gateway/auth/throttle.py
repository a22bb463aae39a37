"""Failed-login throttling, per login name and per client IP, counted in the store.

Counting in the store (not in the process) makes the limit hold across every
gateway instance behind a load balancer. Each counter is a fixed window that
starts at the first failure and dies ``window`` seconds later whatever happens
meanwhile, so an attacker who stops cannot keep a user locked out: the lock
decays on its own, at most ``window`` after it began.

Every attempt takes a slot before the password is checked, so concurrent
guesses cannot all slip past one "is it over the limit?" read, and a throttled
request never reaches the password check (which would still confirm a correct
guess). The client's slot is taken first: a client over its limit cannot
push anybody else's login counter up. A correct password clears the login's
counter and gives the client its slot back; a refused attempt (429) gives back
every slot it took, so only wrong passwords lock anybody out.

Only failures lock out. The volume of attempts is a rate limit, not a ban:
``rate_per_ip`` attempts of an address (right or wrong) per ``rate_window``, a
short fixed window, past which the answer is 429 with ``Retry-After`` until it
ends; so an office behind one NAT address that logs in all morning waits
seconds now and then, and is never locked out for succeeding. At most
``concurrent_per_ip`` and ``concurrent_per_user`` password checks run at once in
one process (the rest wait up to ``QUEUE_WAIT`` for a turn, then get 429
``login_busy``), so one client cannot take the password-hashing threads from
everybody else.
"""
from __future__ import annotations

import asyncio
import contextlib
import hashlib
import math
import unicodedata
from typing import AsyncIterator, Callable

from aiohttp import web

from gateway.config import LoginThrottleSettings
from gateway.errors import ErrorCode, GatewayError
from gateway.forwarded import client
from gateway.net import ip_bucket
from gateway.observe.audit import emit
from gateway.stores import LimitStore

__all__ = ["LoginThrottle"]


QUEUE_WAIT = 5.0  # seconds an attempt may wait for a password-check turn


def _rate_limited(resets_in: float, detail: str = "Too many failed logins; try again later") -> GatewayError:
    retry = str(max(1, math.ceil(resets_in)))
    return GatewayError(429, ErrorCode.RATE_LIMITED, detail, headers={"Retry-After": retry})


class _Turns:
    """Password checks in progress per address and per login, in this process."""

    def __init__(self) -> None:
        self.active: dict[str, int] = {}
        self.changed = asyncio.Condition()

    def _free(self, keys: list[tuple[str, int]]) -> bool:
        return all(self.active.get(key, 0) < limit for key, limit in keys)

    @contextlib.asynccontextmanager
    async def take(self, keys: list[tuple[str, int]], busy: Callable[[], None]) -> AsyncIterator[None]:
        async with self.changed:
            try:
                await asyncio.wait_for(self.changed.wait_for(lambda: self._free(keys)), QUEUE_WAIT)
            except TimeoutError:
                busy()
                raise GatewayError(429, ErrorCode.LOGIN_BUSY, "Too many logins in progress; try again shortly",
                                   headers={"Retry-After": "1"}) from None
            for key, _ in keys:
                self.active[key] = self.active.get(key, 0) + 1
        try:
            yield
        finally:
            async with self.changed:
                for key, _ in keys:
                    self.active[key] -= 1
                    if not self.active[key]:
                        del self.active[key]
                self.changed.notify_all()


class LoginThrottle:
    def __init__(self, settings: LoginThrottleSettings, store: LimitStore) -> None:
        self.settings = settings
        self.store = store
        self.turns = _Turns()

    def client_of(self, request: web.Request) -> str:
        return client(request).address

    def _keys(self, login: str, by: str, client: str | None) -> list[tuple[str, int]]:
        # Hashed: the store never holds login names, and odd bytes never reach a Redis key. Folded: a
        # directory or a MariaDB collation that takes ALICE or "alice " as alice counts them as alice too.
        folded = unicodedata.normalize("NFKC", login).casefold().strip()
        user = hashlib.sha256(f"{by}\0{folded}".encode()).hexdigest()[:32]
        keys = [(f"login:user:{user}", self.settings.per_user)]
        if client is not None:
            keys.append((f"login:ip:{ip_bucket(client)}", self.settings.per_ip))
        return keys

    async def attempt(self, login: str, by: str, client: str | None) -> None:
        """Count one attempt; raise 429 ``rate_limited`` with Retry-After if it is over a limit.

        A refused attempt gives back what it took: a 429 never counts as a failure.
        """
        if client is not None:
            await self.count_attempt(client, login)
        taken: list[str] = []
        for key, limit in reversed(self._keys(login, by, client)):
            count = await self.store.incr_counter(key, self.settings.window)
            taken.append(key)
            if count.count > limit:
                for back in taken:
                    await self.store.incr_counter(back, self.settings.window, -1)
                emit("login.throttled", subject=login, reason="per_ip" if key.startswith("login:ip:") else "per_user")
                raise _rate_limited(count.resets_in)

    async def count_attempt(self, client: str, login: str | None = None) -> None:
        """One login attempt of ``client`` against ``rate_per_ip`` (a password login, or a started OIDC sign-in).

        A rate limit with a short window: past it, 429 until the window ends (``Retry-After``), never longer.
        """
        rate = await self.store.incr_counter(f"login:rate:{ip_bucket(client)}", self.settings.rate_window)
        if rate.count > self.settings.rate_per_ip:
            emit("login.throttled", subject=login, reason="rate_per_ip")
            raise _rate_limited(min(rate.resets_in, self.settings.rate_window),
                                "Too many login attempts from this address; try again shortly")

    def checking(self, login: str, by: str, client: str | None) -> contextlib.AbstractAsyncContextManager[None]:
        """A turn for one password check, within ``concurrent_per_ip`` and ``concurrent_per_user``."""
        keys = [(f"user:{by}\0{login}", self.settings.concurrent_per_user)]
        if client is not None:
            keys.append((f"ip:{ip_bucket(client)}", self.settings.concurrent_per_ip))
        return self.turns.take(keys, lambda: emit("login.throttled", subject=login, reason="busy"))

    async def succeeded(self, login: str, by: str, client: str | None) -> None:
        """A correct password: the login's failures are forgiven, the client's slot is returned."""
        keys = self._keys(login, by, client)
        await self.store.reset_counter(keys[0][0])
        if len(keys) > 1:
            await self.store.incr_counter(keys[1][0], self.settings.window, -1)

    async def refund(self, login: str, by: str, client: str | None) -> None:
        """An attempt the gateway could not decide (identity source down): both slots are given back."""
        for key, _ in self._keys(login, by, client):
            await self.store.incr_counter(key, self.settings.window, -1)
