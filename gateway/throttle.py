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
counter and gives the client its slot back.
"""
from __future__ import annotations

import hashlib
import ipaddress
import math
import unicodedata

from aiohttp import web

from .config import LoginThrottle as ThrottleSettings
from .errors import GatewayError
from .stores import Store

__all__ = ["LoginThrottle", "client_ip"]


def client_ip(request: web.Request, trust_forwarded: bool) -> str:
    """The peer address; with trusted proxies, the address the nearest proxy saw.

    Only the last ``X-Forwarded-For`` entry is used: it was appended by the
    proxy in front of the gateway, every earlier entry is whatever the client sent.
    """
    peer = request.remote or ""
    if trust_forwarded:
        forwarded = ",".join(request.headers.getall("X-Forwarded-For", []))
        last = forwarded.rsplit(",", 1)[-1].strip()
        if last:
            peer = last
    return peer


def _ip_bucket(address: str) -> str:
    """IPv4 per address; IPv6 per /64, the block one subscriber usually gets."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return "other"
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


def _rate_limited(resets_in: float) -> GatewayError:
    retry = str(max(1, math.ceil(resets_in)))
    return GatewayError(429, "rate_limited", "Too many failed logins; try again later", headers={"Retry-After": retry})


class LoginThrottle:
    def __init__(self, settings: ThrottleSettings, store: Store, *, trust_forwarded: bool = False) -> None:
        self.settings = settings
        self.store = store
        self.trust_forwarded = trust_forwarded

    def client_of(self, request: web.Request) -> str:
        return client_ip(request, self.trust_forwarded)

    def _keys(self, login: str, by: str, client: str | None) -> list[tuple[str, int]]:
        # Hashed: the store never holds login names, and odd bytes never reach a Redis key. Folded: a
        # directory or a MariaDB collation that takes ALICE or "alice " as alice counts them as alice too.
        folded = unicodedata.normalize("NFKC", login).casefold().strip()
        user = hashlib.sha256(f"{by}\0{folded}".encode()).hexdigest()[:32]
        keys = [(f"login:user:{user}", self.settings.per_user)]
        if client is not None:
            keys.append((f"login:ip:{_ip_bucket(client)}", self.settings.per_ip))
        return keys

    async def attempt(self, login: str, by: str, client: str | None) -> None:
        """Count one attempt; raise 429 ``rate_limited`` with Retry-After if it is over a limit."""
        for key, limit in reversed(self._keys(login, by, client)):
            taken = await self.store.incr_counter(key, self.settings.window)
            if taken.count > limit:
                raise _rate_limited(taken.resets_in)

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
