"""The client's request body on its way upstream: streamed, but never allowed to stall.

aiohttp's request stream waits for body bytes forever, and while it waits the
request holds a connection of the upstream pool. ``guarded_body`` gives up
after ``limits.body_idle_timeout`` without a byte (answered 408
``body_timeout``), and tells a client that went away mid-upload (499
``client_closed``) apart from an upstream failure.
"""
from __future__ import annotations

import asyncio
from typing import AsyncIterator

import aiohttp
from aiohttp import web

from gateway.context import BODY_ERROR
from gateway.errors import GatewayError

__all__ = ["BodyFailed", "body_failure", "guarded_body", "upstream_body"]

# RFC 9110 §9.2.2; the upstream client retries these once when a pooled connection turns out dead.
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
RETRY_BUFFER = 64 * 1024  # an idempotent request's body up to this size is read first, so it can be sent again


class BodyFailed(Exception):
    """The client's body could not be read; ``request[BODY_ERROR]`` says why."""


async def guarded_body(request: web.Request, idle_timeout: float) -> AsyncIterator[bytes]:
    content = request.content
    while True:
        try:
            async with asyncio.timeout(idle_timeout):
                chunk = await content.readany()
        except TimeoutError:
            request[BODY_ERROR] = "timeout"
            raise BodyFailed("the request body stalled") from None
        except (ConnectionError, aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, asyncio.IncompleteReadError):
            request[BODY_ERROR] = "client_closed"
            raise BodyFailed("the client closed the connection") from None
        if not chunk:
            return
        yield chunk


async def upstream_body(request: web.Request, idle_timeout: float) -> bytes | AsyncIterator[bytes] | None:
    """What to send upstream: nothing, a small idempotent body read whole (replayable), or the stream.

    A streamed body cannot be sent twice, so only requests without a body or
    with a buffered one are retried on a fresh connection; a non-idempotent
    request never is (its bytes may have reached the upstream).
    """
    if not request.body_exists:
        return None
    length = request.content_length
    if request.method in IDEMPOTENT and length is not None and length <= RETRY_BUFFER:
        return b"".join([chunk async for chunk in guarded_body(request, idle_timeout)])
    return guarded_body(request, idle_timeout)


def body_failure(request: web.Request) -> GatewayError | None:
    """The answer for a request whose body failed, or None when the body was not at fault."""
    reason = request.get(BODY_ERROR)
    if reason == "timeout":
        return GatewayError(408, "body_timeout", "The request body stopped arriving", headers={"Connection": "close"})
    if reason == "client_closed":
        return GatewayError(499, "client_closed", "The client closed the connection")
    return None
