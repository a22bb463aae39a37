"""Claims that need no escaping skip percent-encoding: the header value is the one quote() gives."""
from __future__ import annotations

from typing import Any
from urllib.parse import quote

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.upstream.headers import _SAFE, _SURROGATE, encode_claim


def _quoted(value: Any) -> str:
    """encode_claim before printable ASCII values had a shortcut: always through quote()."""
    if isinstance(value, list):
        return ",".join(_quoted(v) for v in value)
    return quote(_SURROGATE.sub("\ufffd", value).encode("utf-8"), safe=_SAFE)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=30) | st.lists(st.text(max_size=10), max_size=4)
       | st.text(alphabet=st.characters(codec=None, categories=["Cs", "Cc", "Lu", "Po"]), max_size=8))
def test_shortcut_and_quote_agree(value: Any) -> None:
    assert encode_claim(value) == _quoted(value)


def test_examples() -> None:
    for value in ("alice", "alice@example.com", "a b", "a,b", "100%", "é", "line\r\nX-Evil: 1", "\x7f", ""):
        assert encode_claim(value) == _quoted(value), value
    assert "\r" not in encode_claim("a\r\nb") and "," not in encode_claim("a,b")
