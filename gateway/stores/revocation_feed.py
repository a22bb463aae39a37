"""The one subscription per process to the channel on which ``RedisStore`` announces every revocation.

Two parts of a process follow revocations made elsewhere: the revocation cache
(``revocation_cache``: its "not revoked" answers are trusted only while the
feed is alive) and the open websockets (``upstream.websocket_sessions``: a
revoked token's sockets close). Both listen to this one feed, which holds one
pub/sub connection, built from the Redis store it is given (never found by
looking for attributes on whatever store it wraps).

Liveness: every message (PONGs to its own PINGs included) is a sign of life; a
connection that dies silently (a partition) is given up after ``liveness``
seconds without one, and redis-py's own reconnection counts as a loss (messages
sent meanwhile are gone). Listeners hear ``feed_confirmed`` on each
(re)subscription, ``feed_lost`` when it can no longer be trusted (or a message
was unreadable, so some revocation may be unknown), and
``revocation_event`` for each revocation; ``feed_tick`` on each PING lets them
purge what has expired.
"""
from __future__ import annotations

import asyncio
import logging
import random
import time
from typing import Any, Protocol

from gateway.stores.redis import RedisStore, RevocationEvent, decode_event

__all__ = ["FeedListener", "FeedObserver", "RevocationFeed"]

log = logging.getLogger("gateway.store")

PING_INTERVAL = 1.0
LIVENESS = 3.0  # seconds without any message (PONGs included) before the subscription counts as dead
BACKOFF = (0.1, 5.0)  # first and longest pause between reconnection attempts
CLOSE_WAIT = 1.0  # seconds the subscription may take to stop at shutdown
_PING = "gateway-revocation-feed"


class FeedListener(Protocol):
    def revocation_event(self, event: RevocationEvent) -> None: ...
    def feed_confirmed(self) -> None: ...
    def feed_lost(self) -> None: ...
    def feed_tick(self, now: float) -> None: ...


class FeedObserver(Protocol):
    """What the feed reports for metrics (gateway.metrics.Metrics implements it)."""

    def revocation_event(self) -> None: ...
    def revocation_subscription(self, healthy: bool) -> None: ...


class _NoObserver:
    def revocation_event(self) -> None: ...
    def revocation_subscription(self, healthy: bool) -> None: ...


class _Lost(Exception):
    """The subscription stopped being trustworthy (silence, unsubscribe, reconnect)."""


def _stop_if_cancelled() -> None:
    """Raise the cancellation of the current task if one is pending (redis-py catches some while it reconnects)."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


class RevocationFeed:
    def __init__(self, redis: RedisStore, *, observer: FeedObserver | None = None,
                 ping_interval: float = PING_INTERVAL, liveness: float = LIVENESS) -> None:
        self.client: Any = redis.client
        self.channel = redis.channel
        self._observer: FeedObserver = observer if observer is not None else _NoObserver()
        self._listeners: list[FeedListener] = []
        self._ping_interval = ping_interval
        self._liveness = liveness
        self._subscribed = False
        self._alive_until = 0.0  # monotonic deadline for the next sign of life
        self.subscriptions = 0  # confirmed (re)subscriptions so far
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    def listen(self, listener: FeedListener) -> None:
        self._listeners.append(listener)

    def alive(self, now: float) -> bool:
        """Whether the subscription is confirmed and was heard from recently enough to trust what it did not say."""
        return self._subscribed and now < self._alive_until

    @property
    def healthy(self) -> bool:
        return self.alive(time.monotonic())

    async def start(self) -> None:
        """Start following (once: every listener's start calls it)."""
        if self._task is None:
            self._task = asyncio.create_task(self._follow_forever(), name="revocation-feed")

    async def close(self) -> None:
        self._closing = True
        if self._task is not None:
            task, self._task = self._task, None
            task.cancel()  # redis-py may turn a cancelled connect into an error: the loop checks _closing too
            await asyncio.wait([task], timeout=CLOSE_WAIT)
        self._lost()

    async def _follow_forever(self) -> None:
        """Subscribe, follow, and on any trouble tell the listeners and retry with backoff."""
        delay = BACKOFF[0]
        while not self._closing:
            confirmed_before = self.subscriptions
            try:
                await self._follow()
            except Exception as exc:  # whatever happened, nothing the feed did not say may be trusted until back
                _stop_if_cancelled()  # a cancellation redis-py turned into an error
                worked = self.subscriptions > confirmed_before
                if worked or delay == BACKOFF[0]:  # once per outage, not once per attempt
                    log.warning("revocation feed: subscription to %s lost (%s); revocations are checked in Redis "
                                "until it is back", self.channel, type(exc).__name__)
                if worked:
                    delay = BACKOFF[0]
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))
            delay = min(delay * 2, BACKOFF[1])

    async def _follow(self) -> None:
        """Hold one subscription until it fails; every message (PONGs included) is a sign of life."""
        await self.client.initialize()  # a cluster client learns its nodes here; others do nothing
        pubsub = self.client.pubsub()
        connection = None
        try:
            await pubsub.subscribe(self.channel)
            # redis-py reconnects and resubscribes on its own, and messages sent meanwhile are lost: a loss for us
            connection = pubsub.connection
            connection.register_connect_callback(self._reconnected)
            deadline = time.monotonic() + self._liveness  # for the confirmation of the SUBSCRIBE
            next_ping = 0.0
            while not self._closing:
                _stop_if_cancelled()  # redis-py's reconnection may swallow a cancellation: it is not lost here
                now = time.monotonic()
                if self._subscribed:
                    deadline = self._alive_until
                if now >= deadline:
                    raise _Lost("no sign of life")
                if now >= next_ping:
                    await pubsub.ping(_PING)
                    next_ping = now + self._ping_interval
                    for listener in self._listeners:
                        listener.feed_tick(now)
                # raw replies: redis-py's get_message cannot parse a PONG under RESP3 with decoded responses
                reply = await pubsub.parse_response(block=False, timeout=max(0.01, min(next_ping, deadline) - now))
                if reply is not None:
                    self._receive(reply)
        finally:
            self._lost()
            if connection is not None:
                connection.deregister_connect_callback(self._reconnected)
            await pubsub.aclose()

    def _receive(self, reply: Any) -> None:
        """One reply on the subscription: a confirmation, a message, or the answer to our PING."""
        now = time.monotonic()
        if self._subscribed and now >= self._alive_until:
            raise _Lost("silent")  # too late: events may be missing
        kind = _text(reply[0]) if isinstance(reply, list) and reply else "pong"  # RESP3 answers PING plainly
        if kind == "subscribe":
            self._confirmed(now)
        elif kind == "message" and len(reply) == 3:
            self._observer.revocation_event()
            try:
                event = decode_event(_text(reply[2]))
            except ValueError:  # some revocation may be unknown: every listener forgets what it took as settled
                log.warning("revocation feed: a message on %s is no revocation event; dropping every cached answer",
                            self.channel)
                for listener in self._listeners:
                    listener.feed_lost()
            else:
                for listener in self._listeners:
                    listener.revocation_event(event)
        elif kind != "pong":
            raise _Lost(kind)
        if self._subscribed:
            self._alive_until = now + self._liveness

    def _confirmed(self, now: float) -> None:
        self._subscribed = True
        self._alive_until = now + self._liveness
        self.subscriptions += 1
        self._observer.revocation_subscription(True)
        if self.subscriptions > 1:
            log.info("revocation feed: subscribed again to %s", self.channel)
        for listener in self._listeners:
            listener.feed_confirmed()

    def _reconnected(self, connection: Any) -> None:
        self._lost()

    def _lost(self) -> None:
        if self._subscribed:
            self._observer.revocation_subscription(False)
        self._subscribed = False
        for listener in self._listeners:
            listener.feed_lost()


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
