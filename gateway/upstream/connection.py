"""One keep-alive connection to an upstream: an asyncio Protocol, responses parsed by httptools (llhttp).

The connection reads exactly one response per request, and says whether it
may carry another one (``reusable``). It may only after a complete,
well-framed final response whose framing llhttp decided (Content-Length or
chunked, or none for 204/304), on a keep-alive HTTP/1.1 (or HTTP/1.0
``keep-alive``) answer, with the whole request body sent. Anything else
discards it: bytes beyond the response (a second response, garbage, a body
on 204/304) in the same read or while idle, a response read until close, a
response to ``HEAD`` (llhttp cannot be told that it has no body, so its
length is unknowable and the connection is closed after the head), ``101``
(the gateway never asks for an upgrade here), bad framing, an oversized head
or an early close.

Interim ``1xx`` answers (``100 Continue``, ``103 Early Hints``) are consumed
and never relayed: aiohttp's server cannot send them to the client, and the
gateway did not relay them before either. Their bytes count toward the head
bound, so a flood of them ends the same way as an oversized head.

The response body is buffered up to ``HIGH_WATER`` bytes; beyond it the
transport stops reading until the relay has written the buffer to the
client, so a slow client holds the upstream, not the gateway's memory.
"""
from __future__ import annotations

import asyncio
from collections import deque
from typing import Callable, cast

from httptools import HttpParserError, HttpParserUpgrade, HttpResponseParser

__all__ = ["HIGH_WATER", "UpstreamConnection", "UpstreamError", "UpstreamTimeout"]

HIGH_WATER = 256 * 1024  # response bytes buffered before reading from the upstream pauses


class UpstreamError(Exception):
    """The upstream's answer is unusable or the connection broke; ``early`` when not one response byte arrived."""

    def __init__(self, reason: str, *, early: bool = False) -> None:
        super().__init__(reason)
        self.early = early


class UpstreamTimeout(UpstreamError):
    """The upstream was silent for the route's timeout."""


class _HeadDone(Exception):
    """Raised in ``on_headers_complete`` of a ``HEAD`` answer to stop llhttp from waiting for a body."""


class UpstreamConnection(asyncio.Protocol):
    """The transport and parser state of one upstream connection (one exchange at a time)."""

    def __init__(self, key: str, max_head: int) -> None:
        self.key = key  # the pool's origin key
        self.max_head = max_head
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self._loop = asyncio.get_running_loop()  # made by the pool's create_connection; read once, not per request
        self._timer: asyncio.TimerHandle | None = None  # the one timer: read-idle while active, the pool's idle time after
        self._timer_at = 0.0
        self._idle_until = 0.0  # in the pool: closed by ``_expire`` once the loop's clock passes this
        self._expire: Callable[[UpstreamConnection], None] | None = None
        self._write_paused = False
        self._drain_waiter: asyncio.Future[None] | None = None
        self._reset(head=False, timeout=0.0)
        self.active = False

    # --- one exchange ---------------------------------------------------------------------------

    def _reset(self, head: bool, timeout: float) -> None:
        self.active = True
        self._head_request = head
        self._timeout = timeout
        self._parser = HttpResponseParser(self)
        self._head_budget = self.max_head
        self._reason = bytearray()
        self._fields: list[tuple[str, str]] = []
        self._has_length = False
        self._chunked = False
        self.status = 0
        self.reason = ""
        self.headers: list[tuple[str, str]] = []
        self.got_bytes = False
        self.final = False  # the final (non-1xx) head arrived
        self.complete = False  # the final response is complete
        self.keep_alive = False
        self.sent = False  # the whole request went out
        self._until_close = False
        self._error: UpstreamError | BaseException | None = None
        self._buffer: deque[bytes] = deque()
        self._buffered = 0
        self._reading_paused = False
        self._waiter: asyncio.Future[None] | None = None
        self._suspended = 0
        self._last = 0.0
        self._head_deadline = 0.0  # once the head has begun, all of it within the timeout (no slow drip)

    def begin(self, head: bool, timeout: float) -> None:
        """A request is about to be written: fresh parser, read-idle timer armed."""
        self._idle_until = 0.0
        self._reset(head, timeout)
        self._last = self._loop.time()
        self._arm(self._last + timeout)

    def finish(self) -> bool:
        """The exchange is over (read or abandoned); whether the connection may carry another request."""
        self.active = False  # the timer stays armed: when it fires, an idle connection is not timed out
        ok = (self.complete and self.keep_alive and self.sent and self._error is None and not self.closed
              and not self._head_request and not self._until_close and not self._buffer)
        if not ok:
            self.abort()
        return ok

    def fail(self, error: BaseException) -> None:
        """End the exchange with ``error`` (the request side failed, or the timer fired) and drop the connection."""
        if self._error is None:
            self._error = error
        self.abort()
        self._wake()

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    def idle(self, seconds: float, expire: Callable[["UpstreamConnection"], None]) -> None:
        """Back in the pool: ``expire(self)`` once it has been idle ``seconds`` (unless ``begin`` comes first)."""
        self._idle_until = self._loop.time() + seconds
        self._expire = expire
        self._arm(self._idle_until)

    # --- the timer ----------------------------------------------------------------------------------
    # One timer per connection, armed lazily: a deadline that moves later never re-arms it (it fires, finds the
    # deadline not passed and re-arms once), so a keep-alive request costs no timer at all in the steady state;
    # only a deadline earlier than the armed one replaces it. Both the read-idle timeout of an exchange and the
    # pool's idle time run on it.

    def _arm(self, at: float) -> None:
        if self._timer is not None:
            if self._timer_at <= at:
                return
            self._timer.cancel()
        self._timer_at = at
        self._timer = self._loop.call_at(at, self._fired)

    def _fired(self) -> None:
        self._timer = None
        if self.closed:
            return
        if self.active:
            self._check_idle()
        elif self._idle_until:
            if self._loop.time() >= self._idle_until:
                self._idle_until = 0.0
                if self._expire is not None:
                    self._expire(self)
            else:
                self._arm(self._idle_until)

    def touch(self) -> None:
        self._last = self._loop.time()

    def suspend(self) -> None:
        """Waiting on the client (its body, or its transport): the upstream's silence is not counted."""
        self._suspended += 1

    def resume(self) -> None:
        self._suspended -= 1
        self.touch()

    def _check_idle(self) -> None:
        """The read-idle timeout of an exchange: silent for its timeout (or the head not whole by its deadline)."""
        if self.complete:
            return
        now = self._loop.time()
        if self._suspended or self._reading_paused:
            self._last = now
        deadline = self._last + self._timeout
        if self._head_deadline and not self.final:
            deadline = min(deadline, self._head_deadline)
        if now >= deadline:
            self.fail(UpstreamTimeout("the upstream was too slow", early=not self.got_bytes))
        else:
            self._arm(deadline)

    # --- asyncio.Protocol -------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not asyncio.Transport subclasses

    def data_received(self, data: bytes) -> None:
        if not self.active or self.complete or self._error is not None:
            self.abort()  # bytes nobody asked for: the next response could not be told from them
            return
        if not self.got_bytes:
            self.got_bytes = True
            self._head_deadline = self._loop.time() + self._timeout
        self.touch()
        try:
            if not self.final:
                self._feed_head(data)
            else:
                self._parser.feed_data(data)
        except HttpParserUpgrade:
            self._broken("an upgrade nobody asked for")
        except HttpParserError as exc:
            if isinstance(exc.__context__, _HeadDone):
                self.complete = True
                self._wake()
            elif self.complete:
                self.abort()  # bytes after a complete response: it stands, the connection does not
            else:
                self._broken(str(exc.__context__ or exc))

    def _feed_head(self, data: bytes) -> None:
        """Feed at most the head budget until the final head is complete, then the rest."""
        if len(data) <= self._head_budget:  # the read is within the budget (an answer's head and body, usually)
            self._head_budget -= len(data)
            self._parser.feed_data(data)  # fed whole, as the loop below would feed it
            return
        view = memoryview(data)
        while view and not self.final:
            if self._head_budget <= 0:
                self._broken("the response head is too large")
                return
            part = view[: self._head_budget]
            self._head_budget -= len(part)
            view = view[len(part):]
            self._parser.feed_data(part)
        if self.final and view and not self.complete:
            self._parser.feed_data(view)
        elif self.complete and view:
            self.abort()  # a second message behind the first (HEAD or no body): never reused

    def eof_received(self) -> bool:
        if not self.active:
            self.closed = True  # idle and closed by the upstream: never taken from the pool again
        elif self.final and self._until_close and not self.complete:
            self.complete = True
            self._wake()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.active and not self.complete:
            self._broken("the upstream closed the connection")
        waiter = self._drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(ConnectionResetError("the upstream closed the connection"))

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        waiter = self._drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def drain(self) -> None:
        if self.closed:
            raise ConnectionResetError("the upstream closed the connection")
        if self._write_paused:
            self._drain_waiter = self._loop.create_future()
            try:
                await self._drain_waiter
            finally:
                self._drain_waiter = None

    # --- httptools callbacks ----------------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self.complete:
            raise HttpParserError("a second response")
        self._reason.clear()
        self._fields = []
        self._has_length = self._chunked = False

    def on_status(self, status: bytes) -> None:
        self._reason += status

    def on_header(self, name: bytes, value: bytes) -> None:
        size = len(name)  # only names of these lengths are folded and compared
        if size == 14 and name.lower() == b"content-length":
            self._has_length = True
        elif size == 17 and name.lower() == b"transfer-encoding":
            self._chunked = value.rsplit(b",", 1)[-1].strip().lower() == b"chunked"
        self._fields.append((name.decode("utf-8", "surrogateescape"), value.decode("utf-8", "surrogateescape")))

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if status < 200:
            return  # interim: consumed; llhttp ends the message here
        self.final = True
        self.status = status
        self.reason = self._reason.decode("utf-8", "surrogateescape")
        self.headers = self._fields
        self.keep_alive = self._parser.should_keep_alive()
        self._until_close = not self._has_length and not self._chunked and status not in (204, 304)
        self._wake()
        if self._head_request:
            raise _HeadDone

    def on_body(self, body: bytes) -> None:
        self._buffer.append(body)
        self._buffered += len(body)
        if self._buffered > HIGH_WATER and not self._reading_paused and self.transport is not None:
            self._reading_paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        if not self.final:
            return  # the end of a 1xx
        self.complete = True
        self.keep_alive = self.keep_alive and self._parser.should_keep_alive()
        self._wake()

    # --- what the client side awaits ---------------------------------------------------------------

    def _broken(self, reason: str) -> None:
        self.fail(UpstreamError(reason, early=not self.got_bytes))

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _wait(self) -> None:
        self._waiter = self._loop.create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    async def head(self) -> None:
        """Wait for the final response head; raises UpstreamError (or the request side's failure)."""
        while not self.final:
            if self._error is not None:
                raise self._error
            await self._wait()
        if self._error is not None:  # broken in the same read as the head: nothing went to the client, a 502
            raise self._error

    @property
    def ready(self) -> bool:
        """``read`` would return at once: body bytes are here, or the body ended well (a failure is not "ready": the
        relay then sends the head before the cut, as it always did)."""
        return bool(self._buffer) or (self.complete and self._error is None)

    @property
    def buffered(self) -> int:
        """Body bytes arrived and not read yet."""
        return self._buffered

    @property
    def whole(self) -> bool:
        """The whole body has arrived, framed by its Content-Length: the next ``read`` returns all that is left."""
        return self.complete and self._error is None and self._has_length

    @property
    def drained(self) -> bool:
        """The whole body has arrived and been read: the last ``read`` returned its last piece."""
        return self.complete and not self._buffer and self._error is None

    async def read(self) -> bytes:
        """The next piece of the body, b"" at its end; raises UpstreamError after a failure."""
        while not self._buffer:
            if self._error is not None:
                raise self._error
            if self.complete:
                return b""
            await self._wait()
        data = b"".join(self._buffer) if len(self._buffer) > 1 else self._buffer[0]
        self._buffer.clear()
        self._buffered = 0
        if self._reading_paused and self.transport is not None and not self.closed:
            self._reading_paused = False
            self.transport.resume_reading()
            self.touch()
        return data
