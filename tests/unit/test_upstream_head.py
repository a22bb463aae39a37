"""The upstream request head: what the gateway writes, and what it refuses to write; the parser is llhttp."""
from __future__ import annotations

import httptools
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict

from gateway.errors import GatewayError
from gateway.upstream import client, connection
from gateway.upstream.client import request_head
from gateway.upstream.pool import Origin


def test_the_response_parser_is_httptools_llhttp():
    assert connection.HttpResponseParser is httptools.HttpResponseParser
    assert httptools.parser.parser.__file__.endswith(".so")  # the compiled llhttp binding, not a Python parser


def test_origin_of_an_upstream_url():
    origin = Origin.parse("https://user:pw@api.example.com:8443/base")
    assert (origin.key, origin.tls, origin.host, origin.port, origin.host_header) == (
        "https://api.example.com:8443", True, "api.example.com", 8443, "api.example.com:8443")
    assert "https://user:pw@api.example.com:8443/base"[origin.prefix_length:] == "/base"
    assert origin.authorization == "Basic dXNlcjpwdw=="
    plain = Origin.parse("http://[::1]")
    assert (plain.host, plain.port, plain.host_header, plain.prefix_length) == ("::1", 80, "[::1]", len("http://[::1]"))


def test_head_framing_as_aiohttp_sent_it():
    origin = Origin.parse("http://up:8080")
    head = request_head("POST", "/a?b=1", origin, CIMultiDict({"X-User-Id": "u1", "Accept": "text/plain"}), None)
    assert head == b"POST /a?b=1 HTTP/1.1\r\nHost: up:8080\r\nX-User-Id: u1\r\nAccept: text/plain\r\nContent-Length: 0\r\n\r\n"
    assert b"Content-Length" not in request_head("GET", "/", origin, CIMultiDict(), None)
    assert b"Accept: */*\r\n" in request_head("GET", "/", origin, CIMultiDict(), None)
    assert b"Content-Length: 3\r\n" in request_head("PUT", "/", origin, CIMultiDict(), b"abc")

    async def stream():  # pragma: no cover - never iterated here
        yield b""
    assert b"Transfer-Encoding: chunked\r\n" in request_head("POST", "/", origin, CIMultiDict(), stream())
    kept = request_head("POST", "/", origin, CIMultiDict({"Content-Length": "9"}), stream())
    assert b"Content-Length: 9\r\n" in kept and b"Transfer-Encoding" not in kept
    preserved = request_head("GET", "/", origin, CIMultiDict({"Host": "client.example"}), None)
    assert preserved.count(b"Host:") == 1 and b"Host: client.example\r\n" in preserved


@pytest.mark.parametrize("name,value", [
    ("X-A", "a\r\nX-Injected: 1"), ("X-A", "a\nb"), ("X-A", "a\rb"), ("X-A", "a\x00b"), ("X-A", "a\x7fb"),
    ("X A", "v"), ("X-A:", "v"), ("X-A\r\nX-B", "v"), ("", "v"),
])
def test_header_that_could_split_the_request_is_refused(name, value):
    with pytest.raises(GatewayError) as refused:
        request_head("GET", "/", Origin.parse("http://up"), CIMultiDict([(name, value)]), None)
    assert refused.value.status == 400


def test_target_with_a_space_or_control_character_is_refused():
    for target in ("/a b", "/a\r\nHost: x", "/\x00"):
        with pytest.raises(GatewayError):
            request_head("GET", target, Origin.parse("http://up"), CIMultiDict(), None)


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet=st.sampled_from("aZ09-_ :;\t\r\n\x00\x1f\x7f\x80é\u2028\udc80!~|`^'\"(),/"), max_size=12))
def test_the_quick_checks_answer_as_the_expressions_do(text):
    """``_printable`` and ``_tokens`` try str methods first; their answer is the regular expressions'."""
    assert client._printable(text) == (client._FORBIDDEN.search(text) is None)
    assert client._tokens(text) == (client._NOT_TOKEN.search(text) is None)


def test_a_control_character_names_the_target_or_the_header():
    with pytest.raises(GatewayError, match="request target"):
        request_head("GET", "/a\x01", Origin.parse("http://up"), CIMultiDict({"X-A": "b"}), None)
    with pytest.raises(GatewayError, match="header"):
        request_head("GET", "/a", Origin.parse("http://up"), CIMultiDict({"X-A": "b\x01"}), None)
