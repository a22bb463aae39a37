"""The request target (gateway/target.py): each refusal with the rule it names, and what is forwarded."""
from __future__ import annotations

import pytest
from aiohttp.test_utils import make_mocked_request
from multidict import CIMultiDict

from gateway.config import Route
from gateway.config.boundary import Paths
from gateway.errors import GatewayError
from gateway.net import Host
from gateway.target import fold_segment, parse_target, request_host

STRICT = Paths()


def refused(target: str, rules: Paths = STRICT) -> str:
    with pytest.raises(GatewayError) as info:
        parse_target(target, rules)
    assert (info.value.status, info.value.code) == (400, "bad_request")
    return info.value.detail


@pytest.mark.parametrize("target, reason", [
    ("api/x", "The request target must be an absolute path"),
    ("http://evil/x", "The request target must be an absolute path"),
    ("", "The request target must be an absolute path"),
    ("/api//x", "Empty segments or backslashes are not allowed in the path"),
    ("//api", "Empty segments or backslashes are not allowed in the path"),
    ("/api\\x", "Empty segments or backslashes are not allowed in the path"),
    ("/x?_method=DELETE", "Method override parameters are not accepted"),
    ("/x?a=1&_METHOD=put", "Method override parameters are not accepted"),
    ("/x?%5Fmethod=PUT", "Method override parameters are not accepted"),
    ("/x?_method", "Method override parameters are not accepted"),
    ("/x?+_method+=PUT", "Method override parameters are not accepted"),
    ("/x?%20_method=PUT", "Method override parameters are not accepted"),
    ("/api;x/y", "Path parameters (;) are not accepted"),
    ("/api/.", "Dot segments are not allowed in the path"),
    ("/api/../x", "Dot segments are not allowed in the path"),
    ("/api/%2e%2E/x", "Dot segments are not allowed in the path"),
    ("/api/x.", "A path segment may not end in a dot or a space"),
    ("/api/x%20", "A path segment may not end in a dot or a space"),
    ("/api/x%2E", "A path segment may not end in a dot or a space"),
    ("/api/%2541", "Double percent-encoding in the path"),
    ("/api/%zz", "Malformed percent-encoding in the path"),
    ("/api/%4", "Malformed percent-encoding in the path"),
    ("/api/a%", "Malformed percent-encoding in the path"),
    ("/api/a%2Fb", "Ambiguous encoding in the path (encoded slash, backslash, semicolon, ?, # or control character)"),
    ("/api/a%5cb", "Ambiguous encoding in the path (encoded slash, backslash, semicolon, ?, # or control character)"),
    ("/api/a%3Bb", "Ambiguous encoding in the path (encoded slash, backslash, semicolon, ?, # or control character)"),
    ("/api/a%3Fb", "Ambiguous encoding in the path (encoded slash, backslash, semicolon, ?, # or control character)"),
    ("/api/a%23b", "Ambiguous encoding in the path (encoded slash, backslash, semicolon, ?, # or control character)"),
    ("/api/a%00b", "Ambiguous encoding in the path (encoded slash, backslash, semicolon, ?, # or control character)"),
    ("/api/a%1Fb", "Ambiguous encoding in the path (encoded slash, backslash, semicolon, ?, # or control character)"),
    ("/api/a%7Fb", "Ambiguous encoding in the path (encoded slash, backslash, semicolon, ?, # or control character)"),
    ("/api/%FF", "The path is not valid UTF-8"),
    ("/api/%C3", "The path is not valid UTF-8"),
    ("/api/%EF%BC%8E%EF%BC%8E", "A Unicode compatibility form of . / \\ ; % or space in the path"),
    ("/api/a\uff0fb", "A Unicode compatibility form of . / \\ ; % or space in the path"),
    ("/api/a\uff05b", "A Unicode compatibility form of . / \\ ; % or space in the path"),
    ("/api/a\u3000b", "A Unicode compatibility form of . / \\ ; % or space in the path"),
    ("/api/a\ufe56b", "A Unicode compatibility form of . / \\ ; % or space in the path"),  # small ?
])
def test_each_refusal_names_its_rule(target, reason):
    assert refused(target) == reason


def test_queries_without_override_are_left_alone():
    for query in ("a=1", "method=x", "x_method=1", "_methods=1", "a=%ZZ", "a=_method", "q=%5Fmethod"):
        assert parse_target(f"/x?{query}").query == query


def test_segments_and_what_is_forwarded():
    path = parse_target("/Api/caf%C3%A9/x%41/?q=1")
    assert path.raw_segments == ("Api", "caf%C3%A9", "x%41") and path.segments == ("Api", "café", "xA")
    assert path.query == "q=1" and path.trailing_slash is True
    assert path.decoded == "/Api/café/xA/"
    assert path.forward_path() == "/Api/caf%C3%A9/x%41/"
    assert path.forward_path(1) == "/caf%C3%A9/x%41/" and path.forward_path(3) == "/" and path.forward_path(4) == "/"
    root = parse_target("/")
    assert (root.raw_segments, root.segments, root.trailing_slash, root.decoded, root.forward_path()) == ((), (), False, "/", "/")
    plain = parse_target("/a/b")
    assert plain.trailing_slash is False and plain.decoded == "/a/b" and plain.forward_path(1) == "/b"
    assert refused("/a#x/../y") == "A request target cannot carry a fragment (#)"


def test_the_upstream_url_has_a_question_mark_only_with_a_query():
    route = Route.model_validate({"name": "api", "prefix": "/api", "upstream": "http://up.internal:81", "strip_prefix": True})
    path = parse_target("/api/x?")
    assert path.upstream_url(route, path.query) == "http://up.internal:81/x"  # an empty query is no query
    assert path.upstream_url(route, "a=1") == "http://up.internal:81/x?a=1"


def test_semicolons_stripped_when_configured():
    rules = Paths(semicolons="strip")
    path = parse_target("/a;x=1/b;c/", rules)
    assert path.raw_segments == ("a", "b") and path.forward_path() == "/a/b/"
    assert refused("/;x/b", rules) == "Empty segments are not allowed in the path"
    assert refused("/a%3Bx", rules).startswith("Ambiguous encoding")


def test_fold_segment():
    assert fold_segment("AdMiN") == "admin"
    assert fold_segment("AdMiN", case_sensitive=True) == "AdMiN"
    assert fold_segment("\uff21\uff24") == "ad"  # fullwidth: NFKC then casefold
    assert fold_segment("Stra\u00dfe") == "strasse"
    assert fold_segment("\uff21", case_sensitive=True) == "\uff21"


def host_of(headers: list[tuple[str, str]], version: tuple[int, int] = (1, 1)):
    from aiohttp.http import HttpVersion

    return request_host(make_mocked_request("GET", "/", headers=CIMultiDict(headers), version=HttpVersion(*version)))


def test_the_request_host():
    assert host_of([("Host", "App.Example.:80")]) == Host("app.example")
    assert host_of([("Host", "app.example:8443")]) == Host("app.example", 8443)
    assert host_of([], (1, 0)) == Host("")
    for headers, reason in (([("Host", "a"), ("Host", "b")], "More than one Host header"),
                            ([], "HTTP/1.1 requests need a Host header"),
                            ([("Host", "a b")], "The Host header is not a valid host"),
                            ([("Host", "a:99999")], "The Host header is not a valid host")):
        with pytest.raises(GatewayError) as info:
            host_of(headers)
        assert (info.value.status, info.value.detail) == (400, reason)


def test_the_default_port_is_the_requests_own_scheme():
    def host(value: str, scheme: str) -> Host:
        return request_host(make_mocked_request("GET", "/", headers={"Host": value}).clone(scheme=scheme))

    assert host("app.example:443", "https") == Host("app.example")
    assert host("app.example:80", "https") == Host("app.example", 80)
    assert host("app.example:443", "http") == Host("app.example", 443)


def test_every_parameter_of_a_segment_is_stripped():
    path = parse_target("/api/admin;a=1;b=2/x;y", Paths(semicolons="strip"))
    assert path.raw_segments == ("api", "admin", "x") and path.forward_path() == "/api/admin/x"


def test_query_names_that_are_not_utf8_and_fragments():
    assert parse_target("/x?%FF%FE=1&a=%FF").query == "%FF%FE=1&a=%FF"  # not UTF-8: replaced, never an error
    assert refused("/x?%FF&_method=PUT") == "Method override parameters are not accepted"
    for target in ("/a#x#y", "/a#frag?x=1", "/a?x=1#frag", "#", "/a?#"):  # never dropped, never forwarded: refused
        assert refused(target) == "A request target cannot carry a fragment (#)"


def test_segments_starting_or_ending_with_x_are_kept_whole():
    assert parse_target("/Xray/boX/").raw_segments == ("Xray", "boX")
