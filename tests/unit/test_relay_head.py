"""``upstream.http.whole_head`` against aiohttp's own framing: the same bytes on the wire, or no fast path at all.

A real aiohttp server answers each case twice on one keep-alive connection: once framed by aiohttp
(``StreamResponse.prepare`` and ``write_eof``, what the relay did for every answer) and once as the relay
now sends a whole answer (``whole_head``, then head and body in one write, ``_Whole`` returned). The raw
bytes read from the socket must be equal, and the connection must carry the next request. Where
``whole_head`` declines, aiohttp frames the answer as before.
"""
from __future__ import annotations

import asyncio
import re

import pytest
from aiohttp import web

from gateway.upstream.http import _Whole, whole_head

DATE = ("Date", "Mon, 07 Dec 2026 16:00:00 GMT")

# (status, reason, headers, body): answers whose framing aiohttp has nothing else to decide
SAME = {
    "plain": (200, "OK", [("Content-Length", "5"), DATE], b"hello"),
    "typed": (200, "OK", [("Content-Type", "application/json"), ("Content-Length", "2"), DATE], b"{}"),
    "empty": (200, "OK", [("Content-Length", "0"), DATE], b""),
    "no_date": (201, "Created", [("Content-Length", "3"), ("Location", "/items/1")], b"new"),
    "own_server": (404, "Not Found", [("Server", "legacy/1.0"), ("Content-Length", "4"), DATE], b"nope"),
    "odd_reason": (299, "Fine, Thanks", [("Content-Length", "1"), DATE], b"x"),
    "repeated": (200, "OK", [("Set-Cookie", "a=1"), ("Set-Cookie", "b=2"), ("Content-Length", "2"), DATE], b"ok"),
    "text": (500, "Internal Server Error", [("X-Note", "caf\u00e9\tbar"), ("Content-Length", "1"), DATE], b"!"),
    "leading_zero": (200, "OK", [("Content-Length", "05"), DATE], b"hello"),
    "surrogate": (200, "OK", [("X-Bin", "\udcff"), ("Content-Length", "2"), DATE], b"ok"),  # both drop it: one serializer
}
# answers (or requests) where aiohttp must frame: whole_head declines
DECLINED = {
    "no_length": (200, "OK", [DATE], b"chunked by aiohttp"),
    "no_content": (204, "No Content", [DATE], b""),
    "not_modified": (304, "Not Modified", [("ETag", '"x"'), DATE], b""),
    "control_char": (200, "OK", [("X-Bad", "a\x01b"), ("Content-Length", "2"), DATE], b"ok"),
}


def _case(request: web.Request) -> tuple[int, str, list[tuple[str, str]], bytes]:
    name = request.query["case"]
    return {**SAME, **DECLINED}[name]


async def _framed_by_aiohttp(request: web.Request) -> web.StreamResponse:
    status, reason, headers, body = _case(request)
    response = web.StreamResponse(status=status, reason=reason, headers=headers)
    await response.prepare(request)
    await response.write_eof(body)
    return response


async def _whole(request: web.Request) -> web.StreamResponse:
    status, reason, headers, body = _case(request)
    response = _Whole(status=status, reason=reason, headers=headers)
    head = whole_head(request, response, len(body))
    if head is None:
        return web.Response(status=599, text="declined")
    await request.writer.write(head + body)  # as the relay sends it
    return response


@pytest.fixture
async def server(aiohttp_server):  # type: ignore[no-untyped-def]
    app = web.Application()
    app.router.add_get("/aiohttp", _framed_by_aiohttp)
    app.router.add_get("/whole", _whole)
    return await aiohttp_server(app)


async def _answers(server, *requests: bytes) -> list[bytes]:  # type: ignore[no-untyped-def]
    """The answer to each request, sent in turn on one connection: its head, and the body its Content-Length
    or chunks frame (none after a ``HEAD``)."""
    async with asyncio.timeout(10):
        reader, writer = await asyncio.open_connection(server.host, server.port)
        try:
            answers = []
            for request in requests:
                writer.write(request)
                answer = await reader.readuntil(b"\r\n\r\n")
                length = re.search(rb"\r\nContent-Length: (\d+)\r\n", answer)
                if request.startswith(b"HEAD "):
                    pass
                elif length is not None:
                    answer += await reader.readexactly(int(length[1]))
                elif b"\r\nTransfer-Encoding: chunked\r\n" in answer:
                    answer += await reader.readuntil(b"0\r\n\r\n")
                answers.append(answer)
            return answers
        finally:
            writer.close()


def _get(path: str, version: str = "1.1", extra: str = "", method: str = "GET") -> bytes:
    return f"{method} {path} HTTP/{version}\r\nHost: test\r\n{extra}\r\n".encode()


def _undated(answer: bytes) -> bytes:
    return re.sub(rb"\r\nDate: [^\r]*\r\n", b"\r\nDate: -\r\n", answer)


@pytest.mark.parametrize("name", sorted(SAME))
async def test_a_whole_answer_is_framed_as_aiohttp_frames_it(server, name):  # type: ignore[no-untyped-def]
    # the third on the same connection: it was kept alive
    framed, whole, again = await _answers(server, _get(f"/aiohttp?case={name}"), *[_get(f"/whole?case={name}")] * 2)
    assert whole.startswith(b"HTTP/1.1 ")
    assert _undated(whole) == _undated(framed)
    assert _undated(again) == _undated(framed)
    if name != "no_date":
        assert whole == framed


@pytest.mark.parametrize("name", sorted(DECLINED))
async def test_answers_aiohttp_must_frame_are_declined(server, name):  # type: ignore[no-untyped-def]
    (answer,) = await _answers(server, _get(f"/whole?case={name}"))
    assert answer.startswith(b"HTTP/1.1 599 "), answer


@pytest.mark.parametrize(("version", "extra", "method"), [
    ("1.0", "Connection: keep-alive\r\n", "GET"),  # aiohttp answers it with Connection: keep-alive
    ("1.1", "Connection: close\r\n", "GET"),  # aiohttp answers Connection: close
    ("1.1", "", "HEAD"),  # no body after the head
])
async def test_requests_aiohttp_must_answer_are_declined(server, version, extra, method):  # type: ignore[no-untyped-def]
    (answer,) = await _answers(server, _get("/whole?case=plain", version, extra, method))
    assert b" 599 " in answer.split(b"\r\n", 1)[0], answer
