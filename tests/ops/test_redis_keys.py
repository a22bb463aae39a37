"""docs/redis.md's key table against the keys the Redis store really writes.

Every method of the store interface is called on a real Redis, through the real login throttle
where key names are made by a caller; then every key in Redis must match a row of the table, and
every row must match a key. A new store method fails here until it is exercised (and its keys
documented).
"""
from __future__ import annotations

import inspect
import re

from gateway.auth.throttle import LoginThrottle
from gateway.config.ops import LoginThrottleSettings
from gateway.stores.base import Store
from gateway.stores.redis import RedisStore
from tests.conftest import ROOT

PREFIX = "gw:"
EXERCISED = {
    "start", "close", "ping", "start_family", "rotate", "is_current", "revoke_family", "deny", "is_revoked",
    "track_session", "rate_limit", "incr_counter", "reset_counter", "put_once", "take", "link_session",
    "session_link", "linked_families", "user_sessions", "describe_session", "session_details",
}


def documented_patterns() -> dict[str, re.Pattern[str]]:
    """Each `<prefix>...` name in the table of docs/redis.md, as a regex over real key names."""
    text = (ROOT / "docs" / "redis.md").read_text(encoding="utf-8")
    table = text[text.index("Keys, all under `store.prefix`"):text.index("## Several instances")]
    names = [name for line in table.splitlines() if line.strip().startswith("| `<prefix>")
             for name in re.findall(r"`(<prefix>[^`]*)`", line.split("|")[1])]
    patterns = {}
    for name in names:
        parts = re.split(r"(<[a-z]+>)", name.replace("<prefix>", PREFIX))
        regex = "".join(re.escape(p) if not p.startswith("<") else ("[^:]+" if i < len(parts) - 2 else ".+")
                        for i, p in enumerate(parts) if p)
        patterns[name] = re.compile(regex + "$")
    return patterns


def test_the_table_is_read():
    patterns = documented_patterns()
    assert len(patterns) >= 10, patterns
    assert patterns["<prefix>{<fid>}:deny:<jti>"].match("gw:{f1}:deny:j1")
    assert not patterns["<prefix>{<fid>}:deny:<jti>"].match("gw:{f1}:spent:j1")


def test_every_store_method_is_exercised():
    methods = {name for name, _ in inspect.getmembers(Store, inspect.isfunction) if not name.startswith("_")}
    assert methods == EXERCISED, f"exercise these in test_every_key_is_documented: {sorted(methods ^ EXERCISED)}"


async def test_every_key_is_documented(redis_url):
    store = RedisStore(redis_url, prefix=PREFIX)
    await store.start()
    try:
        await store.ping()
        await store.start_family("f1", "j1", ttl=60)
        await store.rotate("f1", "j1", "j2", "pair-2", ttl=60, grace=10)
        await store.is_current("f1", "j2")
        await store.deny("f1", "a1", ttl=60)
        await store.is_revoked("f1", "a1")
        await store.start_family("f2", "k1", ttl=60)
        await store.revoke_family("f2", ttl=60)
        await store.track_session("alice", "f1", ttl=60, cap=5)
        await store.user_sessions("alice")
        await store.describe_session("f1", {"created": "1"}, ttl=60)
        await store.session_details("f1")
        await store.rate_limit("api:0123456789abcdef0123456789abcdef", interval=0.1, capacity=5)
        throttle = LoginThrottle(LoginThrottleSettings(), store)
        await throttle.attempt("alice", "username", "2001:db8::1")  # ctr:login:rate, ctr:login:user, ctr:login:ip
        await store.incr_counter("login:user:gone", 60)
        await store.reset_counter("login:user:gone")
        await store.put_once("oidc:state:abc", "{}", ttl=60)
        await store.put_once("oidc:code:def", "{}", ttl=60)
        await store.take("oidc:code:def")
        await store.link_session("f1", "{}", ["oidc:sub:corp:alice", "oidc:sid:corp:s1"], ttl=60)
        await store.session_link("f1")
        await store.linked_families("oidc:sub:corp:alice")
        keys = sorted(await store.client.keys("*"))
    finally:
        await store.close()
    patterns = documented_patterns()
    undocumented = [key for key in keys if not any(p.match(key) for p in patterns.values())]
    assert not undocumented, f"keys the store writes that docs/redis.md's table does not name: {undocumented}"
    unseen = [name for name, p in patterns.items() if not any(p.match(key) for key in keys)]
    assert not unseen, f"rows of docs/redis.md's table no key matched: {unseen} (keys: {keys})"
