"""``gateway.framing`` against aiohttp's own framing: the same bytes on the wire, or no fast path at all.

A real aiohttp server answers each case twice on one keep-alive connection: once framed by aiohttp
(``StreamResponse.prepare`` and ``write_eof``, what the relay did for every answer) and once as the relay
now sends a whole answer (``whole_head``, then head and body in one write, ``Whole`` returned). The raw
bytes read from the socket must be equal, and the connection must carry the next request. Where
``whole_head`` declines, aiohttp frames the answer as before. The gateway's own answers (``web.Response``
objects) are compared the same way: returned to aiohttp, or sent by ``own_answer``.
"""
from __future__ import annotations

import asyncio
import re

import pytest
from aiohttp import web
from aiohttp.payload import StringPayload
from aiohttp.test_utils import make_mocked_request

from gateway.errors import ErrorCode, GatewayError, error_response
from gateway.framing import Whole, own_answer, plain, whole_head

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
    response = Whole(status=status, reason=reason, headers=headers)
    head = whole_head(response, len(body)) if plain(request, status) else None  # as the relay asks
    if head is None:
        return web.Response(status=599, text="declined")
    await request.writer.write(head + body)  # as the relay sends it
    return response


def _own_response(name: str) -> web.Response:
    """One of the gateway's own kinds of answer, made afresh for each request."""
    if name == "error":
        return error_response(GatewayError.unauthorized(ErrorCode.TOKEN_EXPIRED, "Token has expired"))
    if name == "decision":
        return web.Response(status=200, headers={"X-User-Id": "42", "Cache-Control": "no-store", "X-Accel-Expires": "0"})
    if name == "text":
        return web.Response(text="caf\u00e9", headers=[DATE])
    if name == "bytes":
        return web.Response(body=b"\x00\x01", headers=[DATE, ("X-Request-Id", "r1")])
    if name == "json":
        return web.json_response({"ok": True}, status=201, headers=[DATE])
    if name == "cookie":
        response = web.Response(text="in", headers=[DATE])
        response.set_cookie("session", "x", httponly=True)
        return response
    if name == "no_content":
        return web.Response(status=204, headers=[DATE])
    if name == "closing":
        response = web.Response(text="bye", headers=[DATE])
        response.force_close()
        return response
    if name == "compressed":
        response = web.Response(text="zip" * 100, headers=[DATE])
        response.enable_compression()
        return response
    if name == "payload":
        return web.Response(body=StringPayload("a payload"), headers=[DATE])
    raise AssertionError(name)


OWN_SAME = ["error", "decision", "text", "bytes", "json"]
OWN_DECLINED = ["cookie", "no_content", "closing", "compressed", "payload"]


async def _own_by_aiohttp(request: web.Request) -> web.StreamResponse:
    return _own_response(request.query["case"])


async def _own_whole(request: web.Request) -> web.StreamResponse:
    response = _own_response(request.query["case"])
    sent = await own_answer(request, response)
    if request.query.get("expect") == "declined":
        assert sent is response  # aiohttp frames it, and this answer shows it
    else:
        assert isinstance(sent, Whole) and dict(sent) == dict(response)
    return sent


@pytest.fixture
async def server(aiohttp_server):  # type: ignore[no-untyped-def]
    app = web.Application()
    app.router.add_get("/aiohttp", _framed_by_aiohttp)
    app.router.add_get("/whole", _whole)
    app.router.add_route("*", "/own-aiohttp", _own_by_aiohttp)
    app.router.add_route("*", "/own-whole", _own_whole)
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


@pytest.mark.parametrize("name", OWN_SAME)
async def test_an_own_answer_is_framed_as_aiohttp_frames_it(server, name):  # type: ignore[no-untyped-def]
    framed, whole, again = await _answers(server, _get(f"/own-aiohttp?case={name}"),
                                          *[_get(f"/own-whole?case={name}")] * 2)
    assert whole.startswith(b"HTTP/1.1 ")
    assert _undated(whole) == _undated(framed)
    assert _undated(again) == _undated(framed)


@pytest.mark.parametrize("name", OWN_DECLINED)
async def test_own_answers_aiohttp_must_frame_are_left_to_it(server, name):  # type: ignore[no-untyped-def]
    extra = "Accept-Encoding: gzip\r\n"
    (framed,) = await _answers(server, _get(f"/own-aiohttp?case={name}", extra=extra))
    (left,) = await _answers(server, _get(f"/own-whole?case={name}&expect=declined", extra=extra))
    assert _undated(left) == _undated(framed)


@pytest.mark.parametrize(("version", "extra", "method"), [
    ("1.0", "Connection: keep-alive\r\n", "GET"),
    ("1.1", "Connection: close\r\n", "GET"),
    ("1.1", "", "HEAD"),
])
async def test_requests_aiohttp_must_answer_leave_own_answers_to_it(server, version, extra, method):  # type: ignore[no-untyped-def]
    (framed,) = await _answers(server, _get("/own-aiohttp?case=error", version, extra, method))
    (left,) = await _answers(server, _get("/own-whole?case=error&expect=declined", version, extra, method))
    assert _undated(left) == _undated(framed)


def test_a_connect_is_never_plain() -> None:
    """aiohttp sends no body after a 2xx to CONNECT (its ``must_be_empty_body``), as after a HEAD."""
    assert plain(make_mocked_request("GET", "/"), 200)
    assert not plain(make_mocked_request("CONNECT", "example.org:443"), 200)
    assert not plain(make_mocked_request("HEAD", "/"), 200)
