"""The shared store on Redis, so that many gateway instances act as one.

Keys of one family share the hash tag ``{fid}``, so the rotation script, which
touches several of them, runs on one node of a Redis Cluster too. Every key
carries a TTL equal to the remaining lifetime of what it guards, so Redis never
grows without bound.

``<prefix>{fid}:fam``         hash: ``current`` refresh jti
``<prefix>{fid}:revoked``     present once the family is revoked
``<prefix>{fid}:spent:<jti>`` the successor pair of a rotated token, for the grace window
``<prefix>{fid}:deny:<jti>``  a denied access token

The per-request revocation check is one ``EXISTS fam fam fam deny revoked``
(one command, one slot), which is why the revoked flag is a key of its own: a
token is live only when it counts 3, i.e. its family record exists and neither
mark does. The family record is what tells a store that lost its data (a
restart without persistence, a flush, an eviction, a failover to a replica that
never got the write) from one that never revoked anything: a token whose
family Redis no longer knows is refused, so a logout is never undone by a loss.
``<prefix>ctr:<key>``         a fixed-window counter (login throttling)
``<prefix>sessions:<hash>``   sorted set: a user's live families by expiry (``tokens.max_sessions_per_user``)
``<prefix>rl:<route>:<hash>`` a route rate limit's theoretical arrival time, ms (``routes[].rate_limit``)
``<prefix>once:<key>``        a one-time value (OIDC state, SPA code, logout-token jti), taken by GETDEL
``<prefix>{fid}:info``        hash: what the admin API lists of a session (login time and address, last refresh)
``<prefix>{fid}:link``        what an OIDC session is linked to (provider, sid, sub, ID token for logout)
``<prefix>idx:<hash>``        set: the families of one provider session (``sid``) or subject, for back-channel logout

Every revocation (``deny``, ``revoke_family``, reuse detected by ``rotate``) is
also PUBLISHed, in the same script as the write, on the channel
``<prefix>revocations`` as ``{"fid": ..., "jti": ...}`` (``jti`` only for one
denied token): instances running ``store.revocation_cache`` keep their local
copy current from it. Publishing costs no extra round trip, and an instance
with the cache off still informs those with it on.
"""
from __future__ import annotations

import functools
import hashlib
import json
import logging
import time
from typing import Any, Awaitable, Callable, Mapping, TypeVar

import redis.asyncio as aioredis
from redis.exceptions import RedisClusterException, RedisError, ResponseError

from gateway.stores.base import RateDecision, Rotation, RotationOutcome, Store, StoreUnavailable, WindowCount
from gateway.stores.redis_client import close_redis_client, redis_client

__all__ = ["RedisStore", "RevocationEvent", "decode_event", "encode_event"]

T = TypeVar("T")
log = logging.getLogger("gateway.store")

# Atomic rotation: of two instances racing on one token, exactly one sees
# ``current == old`` and mints; the other finds the spent record and returns
# the same successor, or, after the grace window, detects reuse.
#
# ARGV[8] is the request's deadline on Redis's clock (ms): a rotation that
# reaches Redis after it (a stall: the gateway has answered 503 by then) is
# refused, so a refresh the client was told failed is never applied later.
# ``RedisStore.rotate`` derives it from ``_NOW`` read just before (see there).
_ROTATE = """
local now = redis.call('TIME')
if tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) > tonumber(ARGV[8]) then return {'late'} end
if redis.call('EXISTS', KEYS[3]) == 1 then return {'revoked'} end
local current = redis.call('HGET', KEYS[1], 'current')
if not current then return {'unknown'} end
if current == ARGV[1] then
  redis.call('HSET', KEYS[1], 'current', ARGV[2])
  redis.call('PEXPIRE', KEYS[1], ARGV[5])
  if tonumber(ARGV[4]) > 0 then redis.call('SET', KEYS[2], ARGV[3], 'PX', ARGV[4]) end
  return {'rotated'}
end
local prior = redis.call('GET', KEYS[2])
if prior then return {'grace', prior} end
redis.call('DEL', KEYS[1])
redis.call('SET', KEYS[3], '1', 'PX', ARGV[5])
redis.call('PUBLISH', ARGV[6], ARGV[7])
return {'reused'}
"""

# Redis's clock in ms, on the node that holds KEYS[1] (a cluster's nodes need not agree).
_NOW = """
local t = redis.call('TIME')
return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# The revoked mark outlives every token of the family: at least ARGV[1] ms,
# and never less than the family record had left.
_REVOKE = """
local ttl = math.max(redis.call('PTTL', KEYS[1]), tonumber(ARGV[1]))
redis.call('DEL', KEYS[1])
redis.call('SET', KEYS[2], '1', 'PX', ttl)
redis.call('PUBLISH', ARGV[2], ARGV[3])
return 1
"""

_DENY = """
redis.call('SET', KEYS[1], '1', 'PX', ARGV[1])
redis.call('PUBLISH', ARGV[2], ARGV[3])
return 1
"""

# A user's live families, scored by their expiry (ms, Redis's clock): expired ones are dropped, the
# new one added, and those beyond the newest ARGV[3] popped (oldest first) and returned for revocation.
_TRACK = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
local over = redis.call('ZCARD', KEYS[1]) - tonumber(ARGV[3])
if over <= 0 then return {} end
local popped = redis.call('ZPOPMIN', KEYS[1], over)
local out = {}
for i = 1, #popped, 2 do out[#out + 1] = popped[i] end
return out
"""

# GCRA on Redis's clock (so instances with skewed clocks agree): KEYS[1] holds the theoretical
# arrival time in ms; ARGV: interval ms, capacity. Returns {allowed, remaining, retry_after_ms,
# reset_after_ms}; the same arithmetic as stores/gcra.py.
_GCRA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local interval = tonumber(ARGV[1])
local tolerance = interval * tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local ahead = tat + interval - now
if ahead > tolerance then
  return {0, 0, ahead - tolerance, tat - now}
end
redis.call('SET', KEYS[1], tat + interval, 'PX', math.max(1, ahead))
return {1, math.floor((tolerance - ahead) / interval), 0, ahead}
"""

# Add a family to an index set; the set lives as long as its longest-lived member.
_INDEX = """
redis.call('SADD', KEYS[1], ARGV[1])
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[2]) then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 1
"""

# A fixed window: the TTL is set by the first hit only, so a counter always
# dies ``window`` after it was born, however hard it is hit meanwhile.
_INCR = """
if tonumber(ARGV[2]) < 0 and redis.call('EXISTS', KEYS[1]) == 0 then return {0, 0} end
local n = redis.call('INCRBY', KEYS[1], ARGV[2])
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return {n, ttl}
"""


# The rotation deadline: what is left of ``store.timeout`` minus this (or a quarter of it), so that
# a rotation applied just in time still has its answer back before the gateway gives up.
DEADLINE_MARGIN = 0.1


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


RevocationEvent = tuple[str, str | None]  # (fid, jti): jti None revokes the whole family


def encode_event(family: str, jti: str | None = None) -> str:
    return json.dumps({"fid": family} if jti is None else {"fid": family, "jti": jti})


def decode_event(data: str) -> RevocationEvent:
    """The revocation a channel message announces; ValueError if it is not one."""
    try:
        event = json.loads(data)
    except (TypeError, json.JSONDecodeError):
        raise ValueError("not JSON") from None
    family, jti = (event.get("fid"), event.get("jti")) if isinstance(event, dict) else (None, None)
    if not isinstance(family, str) or not (jti is None or isinstance(jti, str)):
        raise ValueError("not a revocation event")
    return family, jti


class RedisStore(Store):
    def __init__(self, url: str, *, prefix: str = "gw:", timeout: float = 1.0) -> None:
        self.prefix = prefix
        self.channel = f"{prefix}revocations"  # where revocations are announced (see the module docstring)
        # One server, TLS, Sentinel or Cluster, by the URL's scheme (see gateway/redis_url.py).
        self.client: aioredis.Redis = redis_client(url, timeout=timeout)  # type: ignore[assignment]
        self.timeout = timeout
        self._now = self.client.register_script(_NOW)
        self._rotate = self.client.register_script(_ROTATE)
        self._revoke = self.client.register_script(_REVOKE)
        self._deny = self.client.register_script(_DENY)
        self._incr = self.client.register_script(_INCR)
        self._track = self.client.register_script(_TRACK)
        self._gcra = self.client.register_script(_GCRA)
        self._index = self.client.register_script(_INDEX)

    def _key(self, family: str, *rest: str) -> str:
        return f"{self.prefix}{{{family}}}:" + ":".join(rest)

    async def _call(self, op: Callable[[], Awaitable[T]]) -> T:
        """Run one Redis operation, turning any failure into a 503 ``store_unavailable``."""
        try:
            return await op()
        except (RedisError, RedisClusterException, OSError, TimeoutError) as exc:
            raise StoreUnavailable(f"The token store is unavailable ({type(exc).__name__})") from None

    async def close(self) -> None:
        await close_redis_client(self.client)

    async def ping(self) -> None:
        await self._call(self.client.ping)

    async def start(self) -> None:
        """Warn (never fail) when Redis keeps nothing across a restart; nothing if it cannot be asked now."""
        try:
            problem = await self.persistence_problem()
        except StoreUnavailable:
            return
        if problem:
            log.warning("store: %s", problem)

    async def persistence_problem(self) -> str | None:
        """Why a restart of this Redis would lose every session, or None (persistent, or CONFIG not allowed).

        A loss is never a security hole (a token whose family Redis no longer knows is refused),
        but every user then has to log in again.
        """
        async def ask() -> tuple[Any, Any]:
            try:
                return await self.client.config_get("save"), await self.client.config_get("appendonly")
            except ResponseError:  # CONFIG renamed away or not allowed to this user: cannot tell
                return None, None

        save, append = await self._call(ask)
        if not (isinstance(save, dict) and isinstance(append, dict)):
            return None
        if str(save.get("save", "x")).strip() or str(append.get("appendonly", "yes")) != "no":
            return None
        return ("Redis has no persistence (save \"\" and appendonly no): after a restart every session is lost "
                "and every user must log in again (tokens issued before it are refused); see docs/redis.md")

    async def start_family(self, family: str, jti: str, ttl: float) -> None:
        key = self._key(family, "fam")

        async def op() -> Any:
            async with self.client.pipeline(transaction=True) as pipe:
                pipe.hset(key, "current", jti)
                pipe.pexpire(key, _ms(ttl))
                return await pipe.execute()

        await self._call(op)

    async def rotate(self, family: str, old_jti: str, new_jti: str, successor: str, ttl: float, grace: float) -> Rotation:
        keys = [self._key(family, "fam"), self._key(family, "spent", old_jti), self._key(family, "revoked")]
        deadline = await self._rotation_deadline(keys[0])
        grace_ms = int(grace * 1000)  # 0: no grace window at all
        args: list[str | int] = [old_jti, new_jti, successor, grace_ms, _ms(ttl), self.channel, encode_event(family), deadline]
        result = await self._call(lambda: self._rotate(keys=keys, args=args))
        if result[0] == "late":
            raise StoreUnavailable("The token store answered too late")
        outcome = RotationOutcome(result[0])
        return Rotation(outcome, result[1] if len(result) > 1 else None)

    async def _rotation_deadline(self, key: str) -> int:
        """The latest moment (Redis's clock, ms) at which a rotation may still be applied.

        Redis's clock is read afresh for each rotation, on ``key``'s node, and the
        bound can only err toward refusing: the reading R was taken at some moment
        between sending and receiving, so R plus the budget left *after* receiving
        is never later, on Redis's clock, than the moment the gateway gives up. A
        reading delayed by a stall costs its own duration from the budget; no
        offset is kept, so no earlier stall can skew a later deadline.
        """
        started = time.monotonic()
        redis_now = int(await self._call(lambda: self._now(keys=[key])))
        left = self.timeout - min(DEADLINE_MARGIN, self.timeout / 4) - (time.monotonic() - started)
        if left <= 0:
            raise StoreUnavailable("The token store answered too late")
        return redis_now + int(left * 1000)

    async def is_current(self, family: str, jti: str) -> RotationOutcome:
        async def op() -> list[Any]:
            async with self.client.pipeline(transaction=False) as pipe:
                pipe.hget(self._key(family, "fam"), "current")
                pipe.exists(self._key(family, "revoked"))
                return await pipe.execute()

        current, revoked = await self._call(op)
        if revoked:
            return RotationOutcome.REVOKED
        if current is None:
            return RotationOutcome.UNKNOWN
        return RotationOutcome.ROTATED if current == jti else RotationOutcome.REUSED

    async def revoke_family(self, family: str, ttl: float) -> None:
        keys = [self._key(family, "fam"), self._key(family, "revoked")]
        args: list[str | int] = [_ms(ttl), self.channel, encode_event(family)]
        await self._call(lambda: self._revoke(keys=keys, args=args))

    async def deny(self, family: str, jti: str, ttl: float) -> None:
        args: list[str | int] = [_ms(ttl), self.channel, encode_event(family, jti)]
        await self._call(lambda: self._deny(keys=[self._key(family, "deny", jti)], args=args))

    async def is_revoked(self, family: str, jti: str) -> bool:
        live = self._key(family, "fam")
        keys = (live, live, live, self._key(family, "deny", jti), self._key(family, "revoked"))
        return int(await self._call(lambda: self.client.exists(*keys))) != 3  # see the module docstring

    async def track_session(self, user: str, family: str, ttl: float, cap: int) -> list[str]:
        # Hashed: the store never holds user names.
        key = f"{self.prefix}sessions:{hashlib.sha256(user.encode()).hexdigest()[:32]}"
        evicted = await self._call(lambda: self._track(keys=[key], args=[family, _ms(ttl), cap]))
        return [str(f) for f in evicted]

    async def user_sessions(self, user: str) -> list[str]:
        key = f"{self.prefix}sessions:{hashlib.sha256(user.encode()).hexdigest()[:32]}"

        async def op() -> list[Any]:
            now = int(await self._now(keys=[key]))
            return list(await self.client.zrangebyscore(key, f"({now}", "+inf"))

        return [str(f) for f in await self._call(op)]

    async def describe_session(self, family: str, fields: Mapping[str, str], ttl: float) -> None:
        key = self._key(family, "info")

        async def op() -> Any:
            async with self.client.pipeline(transaction=True) as pipe:
                pipe.hset(key, mapping={str(k): v for k, v in fields.items()})
                pipe.pexpire(key, _ms(ttl))
                return await pipe.execute()

        await self._call(op)

    async def session_details(self, family: str) -> dict[str, str] | None:
        found = await self._call(lambda: self.client.hgetall(self._key(family, "info")))
        return {str(k): str(v) for k, v in found.items()} or None

    async def rate_limit(self, key: str, interval: float, capacity: int) -> RateDecision:
        args = [max(1, int(interval * 1000)), capacity]
        allowed, remaining, retry_ms, reset_ms = await self._call(
            lambda: self._gcra(keys=[f"{self.prefix}rl:{key}"], args=args))
        return RateDecision(bool(allowed), int(remaining), int(retry_ms) / 1000, int(reset_ms) / 1000)

    def _counter_key(self, key: str) -> str:
        return f"{self.prefix}ctr:{key}"

    async def incr_counter(self, key: str, window: float, amount: int = 1) -> WindowCount:
        args = [_ms(window), amount]
        count, ttl = await self._call(lambda: self._incr(keys=[self._counter_key(key)], args=args))
        return WindowCount(int(count), int(ttl) / 1000)

    async def reset_counter(self, key: str) -> None:
        await self._call(lambda: self.client.delete(self._counter_key(key)))

    # -- one-time values and session links ------------------------------------------

    def _hashed(self, kind: str, key: str) -> str:
        return f"{self.prefix}{kind}:{hashlib.sha256(key.encode()).hexdigest()[:40]}"

    async def put_once(self, key: str, value: str, ttl: float) -> bool:
        name = self._hashed("once", key)
        return bool(await self._call(lambda: self.client.set(name, value, px=_ms(ttl), nx=True)))

    async def take(self, key: str) -> str | None:
        name = self._hashed("once", key)
        value = await self._call(lambda: self.client.getdel(name))
        return None if value is None else str(value)

    async def link_session(self, family: str, data: str, indexes: list[str], ttl: float) -> None:
        link = self._key(family, "link")
        await self._call(lambda: self.client.set(link, data, px=_ms(ttl)))
        args: list[str | int] = [family, _ms(ttl)]
        for name in [self._hashed("idx", index) for index in indexes]:
            await self._call(functools.partial(self._index, keys=[name], args=args))

    async def session_link(self, family: str) -> str | None:
        value = await self._call(lambda: self.client.get(self._key(family, "link")))
        return None if value is None else str(value)

    async def linked_families(self, index: str) -> list[str]:
        members = await self._call(lambda: self.client.smembers(self._hashed("idx", index)))
        return sorted(str(m) for m in members)
