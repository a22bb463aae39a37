"""The strict JWS reading (gateway/auth/jose.py) on its own: every refusal with its message, written out here."""
from __future__ import annotations

import base64
import json

import pytest

from gateway.auth import jose


def b64(data: str | bytes) -> str:
    raw = data.encode() if isinstance(data, str) else data
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def token(header: str | dict, payload: str | dict = "{}", signature: str = "c2ln") -> str:
    text = [part if isinstance(part, str) else json.dumps(part) for part in (header, payload)]
    return f"{b64(text[0])}.{b64(text[1])}.{signature}"


def refused(call, *args) -> str:
    with pytest.raises(ValueError) as info:
        call(*args)
    return str(info.value)


GOOD = {"alg": "HS256", "kid": "k1", "typ": "JWT"}


def test_a_good_header_is_read_as_it_is():
    assert jose.read_header(token(GOOD)) == GOOD
    assert jose.read_header(token(GOOD, signature="")) == GOOD  # an empty signature is still the compact shape
    assert jose.read_header(token({**GOOD, "cty": "json"})) == {**GOOD, "cty": "json"}


@pytest.mark.parametrize("header", [{"alg": "HS256"}, {"kid": "k1"}, {}, {"alg": "HS256", "kid": 1},
                                    {"alg": None, "kid": "k1"}, {"alg": ["HS256"], "kid": "k1"}])
def test_alg_and_kid_are_both_needed_as_strings(header):
    assert refused(jose.read_header, token(header)) == "Token header needs alg and kid"


@pytest.mark.parametrize("name", ["jku", "x5u", "jwk", "x5c", "crit", "b64"])
def test_parameters_naming_keys_or_extensions_are_refused(name):
    assert refused(jose.read_header, token({**GOOD, name: "x"})) == "Token header uses a parameter the gateway does not accept"


@pytest.mark.parametrize("cty", ["JWT", "jwt", "Jwt"])
def test_nested_tokens_are_refused(cty):
    assert refused(jose.read_header, token({**GOOD, "cty": cty})) == "Nested tokens are not accepted"


@pytest.mark.parametrize("value", [None, 42, b"bytes", "", "a.b", "a.b.c.d", "a..c", ".b.c", "a.b+.c", "a.b.c=", "a b.c.d",
                                   "x" * 8193])
def test_malformed_shapes(value):
    assert refused(jose.read_header, value) == "Token is malformed"
    assert refused(jose.peek_claims, value) == "Token is malformed"


def test_the_length_limit_is_8192_characters():
    header = b64(json.dumps(GOOD))
    at_limit = f"{header}.{'A' * (8192 - len(header) - 6)}.c2ln"
    assert len(at_limit) == 8192 and jose.read_header(at_limit) == GOOD
    assert refused(jose.read_header, at_limit[:-4] + "c2lu0") == "Token is malformed"


@pytest.mark.parametrize("header, message", [
    ('{"alg": "HS256", "kid": "a", "kid": "b"}', "Token header is not valid JSON with unique member names"),
    ("not json", "Token header is not valid JSON with unique member names"),
    ('["alg", "kid"]', "Token header is not a JSON object"),
    ('"text"', "Token header is not a JSON object"),
    ("[" * 100_000, "Token header is not valid JSON with unique member names"),
])
def test_headers_that_are_not_one_object(header, message):
    if len(header) > 1000:  # deep nesting: past the length limit, so through _segment's own guard
        with pytest.raises(ValueError) as info:
            jose._segment(b64(header), "header")
        assert str(info.value) == message
        return
    assert refused(jose.read_header, token(header)) == message


def test_bad_base64_and_utf8():
    assert refused(jose.read_header, "A.e30.c2ln") == "Token header is not valid JSON with unique member names"
    not_utf8 = b64(b'{"alg": "\xff"}')
    assert refused(jose.read_header, f"{not_utf8}.e30.c2ln") == "Token header is not valid JSON with unique member names"


def test_peek_claims_reads_the_payload_unverified():
    assert jose.peek_claims(token(GOOD, {"iss": "https://idp", "sub": "a"})) == {"iss": "https://idp", "sub": "a"}
    assert refused(jose.peek_claims, token(GOOD, "[1]")) == "Token payload is not a JSON object"
    assert refused(jose.peek_claims, token(GOOD, '{"iss": 1, "iss": 2}')) == (
        "Token payload is not valid JSON with unique member names")


@pytest.mark.parametrize("name", ["exp", "iat", "nbf"])
@pytest.mark.parametrize("value", ["Infinity", "-Infinity", "NaN", '"1700000000"', "true", "null", "[1]", "{}"])
def test_dates_must_be_finite_numbers(name, value):
    text = f'{{"{name}": {value}}}'
    claims = json.loads(text)
    if claims[name] is None:
        jose.check_payload(token(GOOD, text), claims)  # absent is the caller's business (required claims)
        return
    assert refused(jose.check_payload, token(GOOD, text), claims) == f"Token {name} claim is not a number"


def test_dates_that_are_numbers_pass():
    claims = {"exp": 1_900_000_000, "iat": 1_800_000_000.5, "nbf": 0, "sub": "a"}
    assert jose.check_payload(token(GOOD, claims), claims) is None


def test_check_payload_reads_the_payload_itself_again():
    """PyJWT keeps the last of duplicate members: the raw payload is checked, not the claims it produced."""
    raw = '{"sub": "alice", "sub": "admin"}'
    assert refused(jose.check_payload, token(GOOD, raw), {"sub": "admin"}) == (
        "Token payload is not valid JSON with unique member names")
