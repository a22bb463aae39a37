"""One request to an upstream on a pooled connection: the head serialised here, the body streamed, one safe retry.

The request head carries exactly what aiohttp's client sent: the request
line with the target as the gateway matched it, ``Host`` (the upstream's, or
the client's on ``preserve_host`` routes) first, the rewritten headers in
their order, ``Accept: */*`` when the client sent no ``Accept``, and the
framing: the client's ``Content-Length`` when it sent one,
``Transfer-Encoding: chunked`` for a body of unknown length (the client's
was chunked), ``Content-Length: 0`` for a body-less method outside
GET/HEAD/OPTIONS/TRACE. No ``Connection`` header: HTTP/1.1 keep-alive is the
default. A header name that is not a token or a name or value with a control
character (CR, LF, NUL, ...) is never written: the request is refused with
400 instead (aiohttp's parser cannot produce one, claims are percent-encoded,
so this is a last line of defence). Values are written as the client sent
them (UTF-8, undecodable bytes as they came).

The body goes out as it arrives, with back-pressure both ways; the request
is sent as soon as the head is written and does not wait for ``100 Continue``
(RFC 9110 §10.1.1 allows this; the interim answer is consumed). An upstream
that answers before it has read the whole body gets no more of it, and its
connection is closed afterwards.

Retries (RFC 9112 §9.3.1): a request whose method is idempotent and whose
body is absent or buffered (``bodies.upstream_body``) is sent once more, on
a new connection, when a reused connection broke before one byte of the
answer arrived. Nothing else is ever sent twice.
"""
from __future__ import annotations

import asyncio
import re
from typing import AsyncIterator

from multidict import CIMultiDict

from gateway.errors import GatewayError
from gateway.upstream.bodies import IDEMPOTENT, BodyFailed
from gateway.upstream.connection import UpstreamConnection, UpstreamError, UpstreamTimeout
from gateway.upstream.pool import Origin, Pool

__all__ = ["UpstreamResponse", "request_head", "send"]

_FORBIDDEN = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # aiohttp's check of header text (RFC 9110 §5.5); TAB allowed
_NOT_TOKEN = re.compile(r"[^!#$%&'*+\-.^_`|~0-9A-Za-z]")  # RFC 9110 §5.6.2
_NO_BODY_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})  # aiohttp adds no Content-Length: 0 for these

Body = bytes | AsyncIterator[bytes] | None


def request_head(method: str, target: str, origin: Origin, headers: CIMultiDict[str], body: Body) -> bytes:
    """The request line and header block, or GatewayError 400 when a header cannot be written safely."""
    lines = [f"{method} {target} HTTP/1.1"]
    if "Host" not in headers:
        lines.append("Host: " + origin.host_header)
    names = []
    for name, value in headers.items():
        names.append(name)
        lines.append(f"{name}: {value}")
    printable = _printable(" ".join(lines))  # one check over every line so far, one over all names: cheap
    if " " in target or not (printable or _printable(lines[0])):
        raise GatewayError.bad_request("The request target cannot be forwarded")
    if not (printable and all(names) and _tokens("".join(names))):
        raise GatewayError.bad_request("A header cannot be forwarded")
    if "Accept" not in headers:
        lines.append("Accept: */*")
    if "Content-Length" not in headers:
        framing = _framing(method, body)
        if framing is not None:
            lines.append(framing)
    if origin.authorization is not None:
        lines.append("Authorization: " + origin.authorization)
    lines.append("\r\n")
    return "\r\n".join(lines).encode("utf-8", "surrogateescape")


def _framing(method: str, body: Body) -> str | None:
    """The framing header of a request without the client's ``Content-Length``, as aiohttp's client wrote it."""
    if body is None:
        return None if method in _NO_BODY_METHODS else "Content-Length: 0"
    if isinstance(body, bytes):
        return f"Content-Length: {len(body)}"
    return "Transfer-Encoding: chunked"


def _printable(text: str) -> bool:
    """No control character but TAB in ``text`` (aiohttp's check of header text, RFC 9110 §5.5)."""
    return text.isprintable() or _FORBIDDEN.search(text) is None  # isprintable: no control character at all


def _tokens(text: str) -> bool:
    """``text`` only of token characters (RFC 9110 §5.6.2)."""
    return (text.isascii() and text.replace("-", "").isalnum()) or _NOT_TOKEN.search(text) is None


class UpstreamResponse:
    """The final response head, and its body piece by piece; ``close`` returns the connection to the pool."""

    def __init__(self, pool: Pool, conn: UpstreamConnection, sender: asyncio.Task[None] | None) -> None:
        self._pool = pool
        self._conn = conn
        self._sender = sender
        self.status = conn.status
        self.reason = conn.reason
        self.headers = conn.headers

    async def read(self) -> bytes:
        """The next piece of the body (b"" at its end); the time spent here counts as the upstream's."""
        return await self._conn.read()

    @property
    def ready(self) -> bool:
        """The next ``read`` would not wait for the upstream (UpstreamConnection.ready)."""
        return self._conn.ready

    @property
    def drained(self) -> bool:
        """The piece just read was the body's last (UpstreamConnection.drained)."""
        return self._conn.drained

    @property
    def whole(self) -> bool:
        """The whole body, framed by its Content-Length, is here and unread (UpstreamConnection.whole)."""
        return self._conn.whole

    @property
    def length(self) -> int:
        """Body bytes here and unread: with ``whole``, the body's length."""
        return self._conn.buffered

    def waiting_on_client(self) -> "_Suspended":
        """While writing to the client the upstream's silence is not its fault (read-idle timer held)."""
        return _Suspended(self._conn)

    def close(self) -> None:
        """Back to the pool only when the exchange ended well-framed and keep-alive; otherwise closed."""
        if self._sender is not None and not self._sender.done():
            self._sender.cancel()
        self._pool.release(self._conn, self._conn.finish())


class _Suspended:
    def __init__(self, conn: UpstreamConnection) -> None:
        self._conn = conn

    def __enter__(self) -> None:
        self._conn.suspend()

    def __exit__(self, *exc: object) -> None:
        self._conn.resume()


async def send(
    pool: Pool, origin: Origin, method: str, head: bytes, body: Body, timeout: float, *, chunked: bool
) -> UpstreamResponse:
    """The final response head of one request; TimeoutError/UpstreamTimeout (504), OSError/UpstreamError (502).

    ``chunked``: a streamed body goes out in chunks (the head says ``Transfer-Encoding: chunked``).
    """
    retry = method in IDEMPOTENT and not _streamed(body)
    fresh = False
    while True:
        conn = None if fresh else pool.take(origin)
        reused = conn is not None
        if conn is None:
            conn = await pool.connect(origin, timeout)
        sender = None
        try:
            conn.begin(head=method == "HEAD", timeout=timeout)
            assert conn.transport is not None
            if body is None or isinstance(body, bytes):
                conn.transport.write(head + body if body else head)
                conn.sent = True
            else:
                conn.transport.write(head)
                sender = asyncio.create_task(_send_body(conn, body, chunked))
            await conn.head()
            return UpstreamResponse(pool, conn, sender)
        except BaseException as exc:
            if sender is not None and not sender.done():
                sender.cancel()
            conn.finish()
            pool.release(conn, False)
            if _dead_on_reuse(exc) and reused and retry:  # the keep-alive race
                retry, fresh = False, True
                continue
            raise


def _dead_on_reuse(exc: BaseException) -> bool:
    """Broken before one byte of the answer, and not by the timeout (a slow upstream is never asked twice)."""
    return isinstance(exc, UpstreamError) and exc.early and not isinstance(exc, UpstreamTimeout)


def _streamed(body: Body) -> bool:
    return body is not None and not isinstance(body, bytes)


async def _send_body(conn: UpstreamConnection, body: AsyncIterator[bytes], chunked: bool) -> None:
    """Copy the client's body; waiting on the client does not count as the upstream's silence."""
    transport = conn.transport
    assert transport is not None
    chunks = body.__aiter__()
    try:
        while True:
            conn.suspend()
            try:
                chunk: bytes | None = await chunks.__anext__()
            except StopAsyncIteration:
                chunk = None  # not `break` here: mypyc cannot compile a break inside try/finally
            finally:
                conn.resume()
            if chunk is None:
                break
            if conn.closed:
                return
            if chunked:
                transport.writelines((b"%x\r\n" % len(chunk), chunk, b"\r\n"))
            else:
                transport.write(chunk)
            await conn.drain()
        if chunked and not conn.closed:
            transport.write(b"0\r\n\r\n")
        conn.sent = True
    except BodyFailed as exc:
        conn.fail(exc)  # the reader sees it: 408/499, not the upstream's fault
    except OSError:
        pass  # the upstream went away: the reader sees the closed connection, or has its answer already
