"""The client's request body on its way upstream: streamed, but never allowed to stall.

aiohttp's request stream waits for body bytes forever, and while it waits the
request holds a connection of the upstream pool. ``guarded_body`` gives up
after ``limits.body_idle_timeout`` without a byte (answered 408
``body_timeout``), or once the body averages less than ``limits.body_min_rate``
bytes a second after ``limits.body_rate_grace`` (408 ``body_too_slow``: a
byte every few seconds never trips the idle timeout, yet holds the slot for
ever), and tells a client that went away mid-upload (499 ``client_closed``)
apart from an upstream failure.
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import AsyncIterator

import aiohttp
from aiohttp import web

from gateway.config.limits import Limits
from gateway.context import BODY_ERROR
from gateway.errors import ErrorCode, GatewayError

__all__ = ["BodyFailed", "BodyPace", "body_failure", "guarded_body", "upstream_body"]

# RFC 9110 §9.2.2; the upstream client retries these once when a pooled connection turns out dead.
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
RETRY_BUFFER = 64 * 1024  # an idempotent request's body up to this size is read first, so it can be sent again


class BodyFailed(Exception):
    """The client's body could not be read; ``request[BODY_ERROR]`` says why."""


@dataclass(frozen=True, slots=True)
class BodyPace:
    """How slowly a body may arrive: ``limits.body_idle_timeout``, ``body_min_rate``, ``body_rate_grace``."""

    idle_timeout: float
    min_rate: int = 0  # bytes per second; 0: no minimum
    grace: float = 0.0

    @classmethod
    def of(cls, limits: Limits) -> "BodyPace":
        return cls(limits.body_idle_timeout, limits.body_min_rate, limits.body_rate_grace)


async def guarded_body(request: web.Request, pace: BodyPace) -> AsyncIterator[bytes]:
    content = request.content
    loop = asyncio.get_running_loop()
    started = loop.time()
    received = 0
    while True:
        wait, slow = pace.idle_timeout, False
        if pace.min_rate:  # N bytes buy max(grace, N / rate) seconds since the start
            left = started + max(pace.grace, received / pace.min_rate) - loop.time()
            if left < wait:
                wait, slow = left, True
        try:
            if wait <= 0:
                raise TimeoutError
            async with asyncio.timeout(wait):
                chunk = await content.readany()
        except TimeoutError:
            request[BODY_ERROR] = "too_slow" if slow else "timeout"
            raise BodyFailed("the request body stalled") from None
        except (ConnectionError, aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, asyncio.IncompleteReadError):
            request[BODY_ERROR] = "client_closed"
            raise BodyFailed("the client closed the connection") from None
        if not chunk:
            return
        received += len(chunk)
        yield chunk


async def upstream_body(request: web.Request, pace: BodyPace) -> bytes | AsyncIterator[bytes] | None:
    """What to send upstream: nothing, a small idempotent body read whole (replayable), or the stream.

    A streamed body cannot be sent twice, so only requests without a body or
    with a buffered one are retried on a fresh connection; a non-idempotent
    request never is (its bytes may have reached the upstream).
    """
    if not request.body_exists:
        return None
    length = request.content_length
    if request.method in IDEMPOTENT and length is not None and length <= RETRY_BUFFER:
        return b"".join([chunk async for chunk in guarded_body(request, pace)])
    return guarded_body(request, pace)


def body_failure(request: web.Request) -> GatewayError | None:
    """The answer for a request whose body failed, or None when the body was not at fault."""
    reason = request.get(BODY_ERROR)
    if reason == "timeout":
        return GatewayError(408, ErrorCode.BODY_TIMEOUT, "The request body stopped arriving", headers={"Connection": "close"})
    if reason == "too_slow":
        return GatewayError(408, ErrorCode.BODY_TOO_SLOW, "The request body arrives too slowly", headers={"Connection": "close"})
    if reason == "client_closed":
        return GatewayError(499, ErrorCode.CLIENT_CLOSED, "The client closed the connection")
    return None
