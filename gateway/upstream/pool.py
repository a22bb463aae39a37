"""Keep-alive connections to each upstream origin, reused most-recent first, closed when idle.

The number of connections is bounded by ``UpstreamSlots`` (a connection is
only opened or taken while a slot is held), so the pool itself keeps at most
``limits.upstream_connections`` idle connections per origin.

An idle connection is closed after ``IDLE_TIMEOUT`` (15 s, aiohttp's
default and so the gateway's until now): below nginx's 75 s, above
gunicorn's 2 s and Node's 5 s. An upstream that closes first is seen at once
(the connection's EOF removes it from the pool), and the remaining race, a
close in flight while a request is written, is covered by the one retry of
idempotent requests (``client.exchange``).

``https`` upstreams are reached through ``asyncio``'s own TLS with the
system's trust store and host name verification on (``ssl.create_default_context``,
which honours ``SSL_CERT_FILE``/``SSL_CERT_DIR``), as aiohttp's client did.
"""
from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass

from aiohttp import encode_basic_auth
from yarl import URL

from gateway.upstream.connection import UpstreamConnection

__all__ = ["IDLE_TIMEOUT", "Origin", "Pool"]

IDLE_TIMEOUT = 15.0


@dataclass(frozen=True)
class Origin:
    """Where a route's upstream URL connects, and what the request head says about it."""

    key: str  # scheme://host:port, the pool's key
    tls: bool
    host: str  # to connect to (IDNA, IPv6 without brackets)
    port: int
    host_header: str  # host[:port], the port only when not the scheme's default
    prefix_length: int  # len("scheme://authority") of the route's upstream string: what follows is the path
    authorization: str | None  # user:password in the upstream URL, sent as Basic as aiohttp did

    @classmethod
    def parse(cls, upstream: str) -> "Origin":
        url = URL(upstream)
        assert url.raw_host is not None and url.port is not None, "routes[].upstream is validated by the config"
        authorization = None
        if url.raw_user is not None:
            authorization = encode_basic_auth(url.user or "", url.password or "")
        rest = upstream.split("://", 1)[1]
        slash = rest.find("/")
        prefix_length = len(upstream) - (len(rest) - slash if slash >= 0 else 0)
        return cls(
            key=f"{url.scheme}://{url.raw_host}:{url.port}", tls=url.scheme == "https", host=url.raw_host,
            port=url.port, host_header=url.host_port_subcomponent or url.raw_host, prefix_length=prefix_length,
            authorization=authorization,
        )


class Pool:
    """Idle connections per origin; ``connect`` for a new one, ``release`` to give one back."""

    def __init__(self, max_head: int) -> None:
        self.max_head = max_head
        self._idle: dict[str, list[UpstreamConnection]] = {}
        self._open: set[UpstreamConnection] = set()
        self._tls: ssl.SSLContext | None = None
        self.closed = False
        self.opened = 0  # connections opened so far (tests and metrics read it)

    def take(self, origin: Origin) -> UpstreamConnection | None:
        """The most recently used idle connection still open, or None."""
        idle = self._idle.get(origin.key)
        while idle:
            conn = idle.pop()  # its idle time ends with ``begin``, which the caller calls at once
            if not conn.closed:
                return conn
            self._open.discard(conn)
        return None

    async def connect(self, origin: Origin, timeout: float) -> UpstreamConnection:
        """A new connection within ``timeout`` (TimeoutError), or OSError (refused, TLS verification, DNS)."""
        loop = asyncio.get_running_loop()
        tls = None
        if origin.tls:
            if self._tls is None:
                self._tls = ssl.create_default_context()
            tls = self._tls
        async with asyncio.timeout(timeout):
            _, conn = await loop.create_connection(
                lambda: UpstreamConnection(origin.key, self.max_head), origin.host, origin.port,
                ssl=tls, server_hostname=origin.host if tls is not None else None,
            )
        self.opened += 1
        self._open.add(conn)
        if self.closed:
            conn.abort()
        return conn

    def release(self, conn: UpstreamConnection, reusable: bool) -> None:
        """Back to the pool when ``reusable`` and the pool is open; otherwise closed."""
        if not reusable or self.closed or conn.closed:
            conn.abort()
            self._open.discard(conn)
            return
        conn.idle(IDLE_TIMEOUT, self._expire)
        self._idle.setdefault(conn.key, []).append(conn)

    def _expire(self, conn: UpstreamConnection) -> None:
        idle = self._idle.get(conn.key)
        if idle is not None and conn in idle:
            idle.remove(conn)
        self._open.discard(conn)
        if conn.transport is not None and not conn.closed:
            conn.closed = True
            conn.transport.close()

    def close(self) -> None:
        """Close every connection, idle or in use (shutdown)."""
        self.closed = True
        self._idle.clear()
        for conn in list(self._open):
            conn.abort()
        self._open.clear()
