"""A whole answer in one write: head and body framed as aiohttp frames them, without its per-answer machinery.

aiohttp frames an answer in ``StreamResponse.prepare`` (keep-alive, ``Content-Length``
or chunking, default headers, the status line) and ``write_eof``. When the body is all
here, on a keep-alive HTTP/1.1 request whose method and status leave nothing but the
length to decide (``plain``), that framing is a fixed function of the status and the
headers: ``whole_head`` computes it with aiohttp's own defaults and serializer, and the
caller writes head and body at once through the request's writer, returning a
``Whole``, which aiohttp then neither prepares nor ends again.

Two callers: the relay, for an upstream's answer whose body is all here
(``upstream.http``), and the middleware, for the gateway's own answers (decisions,
refusals, its endpoints' JSON: ``own_answer``). Everything else is framed by aiohttp as
before. tests/unit/test_relay_head.py compares the bytes with aiohttp's framing on a
real server, for both callers.
"""
from __future__ import annotations

from aiohttp import web
from aiohttp.helpers import rfc822_formatted_time
from aiohttp.http import SERVER_SOFTWARE, HttpVersion11
from aiohttp.http_writer import _serialize_headers

__all__ = ["Whole", "own_answer", "plain", "whole_head"]


class Whole(web.StreamResponse):
    """An answer whose head and whole body left in one write: aiohttp's framing has nothing left to do (its
    ``prepare`` and ``write_eof`` are not run again), and the connection is kept alive."""

    @property
    def prepared(self) -> bool:
        return True

    @property
    def keep_alive(self) -> bool:
        return True

    async def prepare(self, request: web.BaseRequest) -> None:
        return None

    async def write_eof(self, data: bytes | bytearray | memoryview = b"") -> None:
        return None


def plain(request: web.BaseRequest, status: int) -> bool:
    """A keep-alive HTTP/1.1 request other than ``HEAD`` and ``CONNECT``, answered with a status that has a body:
    nothing of the answer's framing for aiohttp to decide but its length."""
    return (request.version == HttpVersion11 and request.method not in ("HEAD", "CONNECT") and request.keep_alive
            and status >= 200 and status not in (204, 304))


def whole_head(response: web.StreamResponse, length: int) -> bytes | None:
    """The head aiohttp's own framing writes for ``response`` with a body of ``length`` bytes, when that framing has
    nothing else to decide: the caller has found the request and the status ``plain``, and the answer is framed by
    its own ``Content-Length``. None otherwise (chunked, closing, a header aiohttp would refuse): the caller then lets
    aiohttp frame it. The defaults are aiohttp's (``StreamResponse._prepare_headers``) and so is the serializer,
    which refuses control characters."""
    headers = response.headers
    if "Content-Length" not in headers or "Transfer-Encoding" in headers or "Connection" in headers:
        return None
    if length and "Content-Type" not in headers:
        headers["Content-Type"] = "application/octet-stream"
    if "Date" not in headers:
        headers["Date"] = rfc822_formatted_time()
    headers.setdefault("Server", SERVER_SOFTWARE)
    try:
        return _serialize_headers(f"HTTP/1.1 {response.status} {response.reason}", headers)
    except ValueError:
        return None  # aiohttp's framing raises it again, as it always did


async def own_answer(request: web.Request, response: web.StreamResponse) -> web.StreamResponse:
    """One of the gateway's own answers (a ``web.Response`` with its body in bytes), sent whole when aiohttp's framing
    has nothing to decide; else, or when the client has gone, ``response`` itself for aiohttp to frame (and to
    find the client gone) as before. Cookies, compression and chunking are aiohttp's to frame."""
    if (type(response) is not web.Response or response.chunked or response.compression or response._cookies
            or response.keep_alive is False or not plain(request, response.status)):
        return response  # a cookie jar is read where aiohttp keeps it: ``cookies`` would make one for each answer
    body = response.body
    if body is None:
        body = b""
    elif not isinstance(body, bytes):
        return response  # a payload object: aiohttp writes it
    headers = response.headers
    if "Content-Length" not in headers:
        headers["Content-Length"] = str(len(body))
    head = whole_head(response, len(body))
    if head is None:
        return response
    try:
        await request.writer.write(head + body)  # unprepared, it writes the bytes as given and counts them
    except ConnectionResetError:
        return response  # nothing was written: aiohttp's own write meets the closed client, as before
    whole = Whole(status=response.status, reason=response.reason)  # logged already (the middleware)
    if len(response):
        whole.update(response)  # the error code, for the trace
    return whole
