"""Plain path segments skip percent-decoding: the answer (segment or 400) is the one full decoding gives."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.errors import GatewayError
from gateway.target import _FORBIDDEN_DECODED as FORBIDDEN
from gateway.target import _PCT as BAD_PERCENT
from gateway.target import _check_text, _decode_segment

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
