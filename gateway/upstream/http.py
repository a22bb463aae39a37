"""Forwarding to the upstream: the rewritten request, then bodies streamed both ways.

Bodies are never read whole: the request body is handed to the upstream client
as a stream and the response is copied chunk by chunk, so a 1 GB transfer
passes in constant memory. Plain HTTP goes through the gateway's own client
(``client``, ``pool``, ``connection``: HTTP/1.1 on asyncio Protocols, responses
parsed by httptools); websockets through one aiohttp session (``session``).

An answer whose whole body is already here when its head arrives (most API
answers) leaves in one write of head and body, framed as aiohttp frames it
(``framing``); every other answer is framed by aiohttp's ``StreamResponse``.
"""
from __future__ import annotations

import asyncio
import time

import aiohttp
from aiohttp import web
from multidict import CIMultiDict

from gateway.config import Route
from gateway.config.limits import Limits
from gateway.context import ANSWER_HEADERS, RESPONSE_BYTES, SUBJECT, UPSTREAM_ERROR, UPSTREAM_SECONDS, state
from gateway.errors import ErrorCode, GatewayError
from gateway.forwarded import client as identified
from gateway.framing import Whole, plain, whole_head
from gateway.lifecycle import LIFECYCLE
from gateway.target import RequestPath
from gateway.upstream.bodies import BodyFailed, BodyPace, body_failure, upstream_body
from gateway.upstream.client import UpstreamResponse, request_head, send
from gateway.upstream.connection import UpstreamError, UpstreamTimeout
from gateway.upstream.headers import HOP_BY_HOP, connection_tokens
from gateway.upstream.pool import Origin, Pool
from gateway.upstream.slots import UpstreamSlots

__all__ = ["Upstream"]


def _response_headers(upstream: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The upstream's answer headers without the hop-by-hop ones (a list: the response makes its one CIMultiDict)."""
    listed = [v for k, v in upstream if k.lower() == "connection"]
    drop = HOP_BY_HOP | connection_tokens(listed) if listed else HOP_BY_HOP
    return [(k, v) for k, v in upstream if k.lower() not in drop]


class Upstream:
    """The lean HTTP/1.1 client's pool for proxied requests, and one aiohttp session for websockets."""

    def __init__(self, limits: Limits | None = None) -> None:
        self._session: aiohttp.ClientSession | None = None
        self.limits = limits if limits is not None else Limits()
        # per upstream origin; websockets are bounded by limits.max_websockets instead
        self.slots = UpstreamSlots(self.limits.upstream_connections, self.limits.upstream_queue_timeout,
                                   self.limits.upstream_client_share, self.limits.upstream_reserved)
        self.pace = BodyPace.of(self.limits)
        # an upstream's response head is bounded like a client's request head
        self.pool = Pool(self.limits.max_head_size)
        self._origins: dict[str, Origin] = {}

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(limit=0, limit_per_host=0, ttl_dns_cache=60, enable_cleanup_closed=True)
        self._session = aiohttp.ClientSession(
            connector=connector,
            auto_decompress=False,
            cookie_jar=aiohttp.DummyCookieJar(),
            skip_auto_headers=("User-Agent", "Accept-Encoding", "Content-Type"),
        )

    async def close(self) -> None:
        self.pool.close()
        if self._session:
            await self._session.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        """The websocket client (``upstream.websocket``); plain requests use ``pool``."""
        assert self._session is not None, "Upstream.start() was not called"
        return self._session

    def origin(self, upstream: str) -> Origin:
        origin = self._origins.get(upstream)
        if origin is None:
            origin = self._origins[upstream] = Origin.parse(upstream)
        return origin

    async def forward(self, request: web.Request, route: Route, path: RequestPath, headers: CIMultiDict[str]) -> web.StreamResponse:
        origin = self.origin(route.upstream)
        target = path.upstream_url(route, path.query)[origin.prefix_length:]  # origin-form: forward_path starts with "/"
        try:  # a small idempotent body is read before a pooled connection is taken
            body = await upstream_body(request, self.pace)
        except BodyFailed as exc:
            raise _failure(request, exc) from None
        head = request_head(request.method, target, origin, headers, body)
        chunked = body is not None and not isinstance(body, bytes) and "Content-Length" not in headers
        # one address holds at most its share; requests without a verified token leave the reserve
        client = identified(request).bucket
        async with self.slots.hold(route.upstream, client, anonymous=SUBJECT not in state(request)):
            started = time.perf_counter()
            try:
                upstream = await send(self.pool, origin, request.method, head, body, route.timeout, chunked=chunked)
            except (asyncio.TimeoutError, UpstreamError, OSError, BodyFailed) as exc:
                raise _failure(request, exc) from None
            finally:
                state(request)[UPSTREAM_SECONDS] = time.perf_counter() - started
            try:
                return await _relay(request, upstream)
            finally:
                upstream.close()


def _failure(request: web.Request, exc: BaseException) -> GatewayError:
    """A failed upstream request: the client's body at fault (408, 499), else the upstream's (504, 502)."""
    failed_body = body_failure(request)
    if failed_body is not None:
        return failed_body
    if isinstance(exc, (asyncio.TimeoutError, UpstreamTimeout)):
        request[UPSTREAM_ERROR] = "timeout"
        return GatewayError(504, ErrorCode.UPSTREAM_TIMEOUT, "The upstream service did not answer in time")
    request[UPSTREAM_ERROR] = "unavailable"
    return GatewayError(502, ErrorCode.UPSTREAM_UNAVAILABLE, "The upstream service is unavailable")


class _Relayed(web.StreamResponse):
    """Its head is held at ``prepare`` until body bytes go with it (as aiohttp's own ``Response`` does), so a small
    answer leaves in one write to the client, not two; ``_relay`` sends the head alone when the upstream has no body
    bytes ready, so a client never waits on the upstream for the head of a streamed answer."""

    _send_headers_immediately = False


async def _prepared(request: web.Request, upstream: UpstreamResponse) -> _Relayed:
    """The client's answer with the upstream's status and headers and the gateway's own, prepared (head held)."""
    response = _Relayed(status=upstream.status, reason=upstream.reason, headers=_response_headers(upstream.headers))
    lifecycle = request.app.get(LIFECYCLE)
    if lifecycle is not None and lifecycle.draining:
        response.force_close()  # shutting down: the client's next request goes to a live instance
    answer = request.app.get(ANSWER_HEADERS)
    if answer is not None:  # X-Request-Id, Server, CORS, RateLimit: set once, here, not by a prepare hook
        answer(request, response)
    await response.prepare(request)
    return response


async def _whole(request: web.Request, upstream: UpstreamResponse) -> web.StreamResponse | None:
    """A whole answer already here, sent with its head in one write, without aiohttp's per-answer framing
    (``whole_head`` says when that is the same bytes); None when aiohttp must frame it."""
    lifecycle = request.app.get(LIFECYCLE)
    if not plain(request, upstream.status) or (lifecycle is not None and lifecycle.draining):
        return None  # before any work: aiohttp frames it (a draining answer says Connection: close)
    response = Whole(status=upstream.status, reason=upstream.reason, headers=_response_headers(upstream.headers))
    answer = request.app.get(ANSWER_HEADERS)
    if answer is not None:
        answer(request, response)
    head = whole_head(response, upstream.length)
    if head is None:
        return None
    body = await upstream.read()  # at once: all of it is here
    # the request's writer, unprepared, writes the bytes as given; it counts them (aiohttp then never answers
    # twice), raises ConnectionResetError on a closed client (499) and waits for a full transport to drain
    await request.writer.write(head + body)
    state(request)[RESPONSE_BYTES] = len(body)
    return response


async def _relay(request: web.Request, upstream: UpstreamResponse) -> web.StreamResponse:
    """Copy status, headers and body; once headers are sent, a failure can only abort."""
    if upstream.whole:
        whole = await _whole(request, upstream)
        if whole is not None:
            return whole
    response = await _prepared(request, upstream)
    request[RESPONSE_BYTES] = 0
    reading = True  # False while writing: a failure then is the client's, not the upstream's
    head_sent = False
    try:
        if not upstream.ready:  # the body is still to come (a stream, a slow upstream): the head goes now
            reading = False
            await response.write(b"")
            reading = head_sent = True
        while chunk := await upstream.read():
            reading = False
            with upstream.waiting_on_client():
                if upstream.drained:  # the last piece: with the end of the body (and the head, if held) in one write
                    await response.write_eof(chunk)
                else:
                    await response.write(chunk)
            request[RESPONSE_BYTES] += len(chunk)
            reading = head_sent = True
    except (asyncio.TimeoutError, UpstreamError, BodyFailed, OSError) as exc:
        if not (reading or head_sent) and isinstance(exc, ConnectionResetError):
            raise  # the client left before its answer began: 499 client_closed, as for any answer
        # Headers are gone already: the only honest signal left is a cut connection.
        if reading:
            request[UPSTREAM_ERROR] = "aborted"
        if request.transport is not None:
            request.transport.abort()
        return response
    await response.write_eof()
    return response
