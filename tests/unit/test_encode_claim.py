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


def test_values_that_are_not_text() -> None:
    """Written out: booleans as JSON spells them, numbers and objects as compact sorted JSON, lists item by item."""
    assert encode_claim(True) == "true" and encode_claim(False) == "false"
    assert encode_claim(7) == "7" and encode_claim(1.5) == "1.5" and encode_claim(None) == "null"
    assert encode_claim({"b": 1, "a": [1, 2]}) == '{"a":[1%2C2]%2C"b":1}'
    assert encode_claim(["x", True, 3, ("y", "z")]) == "x,true,3,y,z"
    assert encode_claim(("a,b", "c")) == "a%2Cb,c"
    assert encode_claim("\ud800x") == "%EF%BF%BDx"  # a lone surrogate becomes U+FFFD
    assert encode_claim("é\ud800") == "%C3%A9%EF%BF%BD"
