"""Plain path segments skip percent-decoding: the answer (segment or 400) is the one full decoding gives."""
from __future__ import annotations

from typing import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.errors import GatewayError
from gateway.target import _FORBIDDEN_DECODED as FORBIDDEN
from gateway.target import _PCT as BAD_PERCENT
from gateway.target import DEFAULT_PATH_RULES, RequestPath, _check_text, _decode_segment, _without_params, parse_target

PLAIN = "ABCXYZabcxyz0189._~!$&'()*+,=:@-"


def _fully_decoded(raw: str) -> str:
    """The decoding every segment went through before plain segments had a shortcut."""
    from urllib.parse import unquote_to_bytes
    if BAD_PERCENT.search(raw):
        raise GatewayError.bad_request("malformed")
    data = unquote_to_bytes(raw)
    if FORBIDDEN.search(data):
        raise GatewayError.bad_request("forbidden")
    text = data.decode("utf-8")
    _check_text(text)
    return text


def _outcome(fn, raw: str) -> str:
    try:
        return "ok:" + fn(raw)
    except GatewayError:
        return "400"
    except UnicodeDecodeError:
        return "400"


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=PLAIN + "%;/\\ \x00\x7f.é", max_size=12))
def test_shortcut_and_full_decoding_agree(raw: str) -> None:
    assert _outcome(_decode_segment, raw) == _outcome(_fully_decoded, raw)


@pytest.mark.parametrize("raw", [".", "..", "a.", "a ", "items", "v1", "x~y", "a%2e"])
def test_examples(raw: str) -> None:
    assert _outcome(_decode_segment, raw) == _outcome(_fully_decoded, raw)


def _path_by_segment(path: str) -> RequestPath:
    """``parse_target`` of a path without a query, as it was before plain paths had a shortcut: every segment
    decoded on its own."""
    if "//" in path:
        return parse_target(path)  # refused before any segment is looked at
    trailing = path.endswith("/") and path != "/"
    raw = tuple(_without_params(s, DEFAULT_PATH_RULES) for s in path.strip("/").split("/")) if path != "/" else ()
    return RequestPath(raw, tuple(_decode_segment(s) for s in raw), "", trailing)


def _path_outcome(fn: Callable[[str], RequestPath], path: str) -> str:
    try:
        result = fn(path)
    except GatewayError as exc:
        return f"400 {exc}"
    return repr((result.raw_segments, result.segments, result.query, result.trailing_slash))


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet="ab./%2e;~@- ", max_size=14).map(lambda p: "/" + p))
def test_plain_path_shortcut_agrees_with_segment_by_segment(path: str) -> None:
    """A path of plain segments is checked in one match; the answer (the segments, or the 400 and its reason)
    is the one decoding each segment gives."""
    assert _path_outcome(parse_target, path) == _path_outcome(_path_by_segment, path)


@pytest.mark.parametrize("path", ["/", "/api/v1/items/42", "/a/", "/a/.", "/a/../b", "/a./b", "/a/b.", "/.well-known/x",
                                  "/a/%2e", "/a;b/c"])
def test_plain_path_examples(path: str) -> None:
    assert _path_outcome(parse_target, path) == _path_outcome(_path_by_segment, path)
