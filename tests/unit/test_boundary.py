"""Which client headers cross the trust boundary (gateway/config/boundary.py), against lists written out here.

The expectations never come from the module's own constants: a name dropped from ``AUTHORITATIVE_HEADERS``
(or misspelt there) must fail these tests, not silently shrink what they check.
"""
from __future__ import annotations

import pytest
from pydantic import ValidationError

from gateway.config.boundary import ClientBoundary, ClientHeaders, fold_header

# Every header an upstream framework may read as the client's address, URL, method or user, lower-cased.
STRIPPED_BY_DEFAULT = {
    "forwarded", "x-forwarded", "x-real-ip", "true-client-ip", "x-client-ip", "x-cluster-client-ip", "client-ip",
    "cf-connecting-ip", "fastly-client-ip", "x-proxyuser-ip", "x-original-url", "x-original-uri", "x-rewrite-url",
    "x-original-host", "x-host", "x-original-method", "x-http-method-override", "x-http-method",
    "x-method-override", "remote-user", "x-remote-user", "remote-addr",
    "x-forwarded-user", "x-forwarded-email", "x-forwarded-preferred-username", "x-forwarded-groups",
    "x-forwarded-access-token", "x-webauth-user",
}
# Set by whoever proxies to the upstream, never passed on from the client.
SET_BY_THE_PROXY = {"x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "x-request-id"}


def test_fold_header():
    assert fold_header("X_User-ID") == "x-user-id"
    assert fold_header("x-user-id") == "x-user-id"


def test_the_default_list_is_exactly_this():
    assert ClientHeaders().stripped() == frozenset(STRIPPED_BY_DEFAULT)


def test_strip_adds_and_keep_removes_folded():
    settings = ClientHeaders(strip=("X-Tenant", "x_account"), keep=("x_real-IP", "X-Original-URL"))
    assert settings.stripped() == frozenset(STRIPPED_BY_DEFAULT - {"x-real-ip", "x-original-url"} | {"x-tenant", "x-account"})


@pytest.mark.parametrize("field", ["strip", "keep"])
@pytest.mark.parametrize("name", ["X User", "X-User:", "", "X-Üser", "X-User\r\n"])
def test_names_must_be_header_names(field, name):
    with pytest.raises(ValidationError) as info:
        ClientHeaders(**{field: (name,)})
    assert "is not a header name" in str(info.value)


def test_keep_names_only_default_headers_and_never_forwarded():
    with pytest.raises(ValidationError) as info:
        ClientHeaders(keep=("X-Tenant",))
    assert "['X-Tenant'] are not stripped by default, so there is nothing to keep" in str(info.value)
    with pytest.raises(ValidationError) as info:
        ClientHeaders(keep=("FORWARDED",))
    assert "Forwarded is always set by the gateway itself" in str(info.value)
    assert ClientHeaders(keep=("X_Real_IP", "true-client-ip")).keep == ("X_Real_IP", "true-client-ip")


def boundary(settings: ClientHeaders | None = None) -> ClientBoundary:
    return ClientBoundary.build(["X-User-Id", "X-User-Roles", "X-User-Id", "X-Gateway-Identity"], ["X-Auth-", "X-Auth-"],
                                settings or ClientHeaders())


def test_build_keeps_spellings_and_folds_for_comparison():
    b = boundary()
    assert b.identity == ("X-User-Id", "X-User-Roles", "X-Gateway-Identity")  # once each, in order
    assert b.prefixes == ("X-Auth-",) and b.folded_prefixes == ("x-auth-",)
    assert b.underscores is True
    assert b.names[:3] == ("X-User-Id", "X-User-Roles", "X-Gateway-Identity")
    assert "X-Real-IP" in b.names and "Forwarded" in b.names and "X-Request-Id" in b.names
    assert len(b.names) == len(set(b.names)) == 3 + len(STRIPPED_BY_DEFAULT) + len(SET_BY_THE_PROXY)
    assert b.folded == frozenset({"x-user-id", "x-user-roles", "x-gateway-identity"} | STRIPPED_BY_DEFAULT | SET_BY_THE_PROXY)
    assert ClientBoundary.build([], [], ClientHeaders(allow_underscores=True)).underscores is False


def test_one_spelling_per_folded_name():
    b = ClientBoundary.build(["X-Real-IP", "x_real_ip"], [], ClientHeaders(strip=("X-REAL-IP",)))
    assert [n for n in b.names if fold_header(n) == "x-real-ip"] == ["X-REAL-IP"]


@pytest.mark.parametrize("name", sorted(STRIPPED_BY_DEFAULT | SET_BY_THE_PROXY))
def test_every_listed_header_is_covered_in_every_spelling(name):
    b = boundary()
    for spelling in (name, name.upper(), name.title(), name.replace("-", "_")):
        assert b.covers(spelling), spelling
    assert b.covers(name, trust_forwarded=True)  # trusting forwarding headers never lets these through


@pytest.mark.parametrize("name", ["X-User-Id", "x-user-roles", "X-GATEWAY-IDENTITY", "X-Auth-Tenant", "x-auth-", "X_Auth_Anything"])
def test_identity_headers_and_families_are_covered(name):
    assert boundary().covers(name)
    assert boundary(ClientHeaders(allow_underscores=True)).covers(name)


@pytest.mark.parametrize("name", ["Accept", "Content-Type", "Authorization", "Cookie", "X-User", "X-User-Ids", "X-Aut",
                                  "X-Forwarded", "User-Agent", "Forwarded-For", "X-Real-IP2", "Host"])
def test_other_headers_are_not(name):
    b = boundary()
    if name in {"X-Forwarded"}:
        assert b.covers(name)
        return
    assert not b.covers(name)


def test_underscores():
    assert boundary().covers("X_Anything")
    assert boundary().covers("Accept_Language")
    assert not boundary(ClientHeaders(allow_underscores=True)).covers("Accept_Language")
    assert boundary(ClientHeaders(allow_underscores=True)).covers("X_Real_IP")  # still listed, folded


def test_other_forwarded_headers_only_from_trusted_proxies():
    b = boundary()
    for name in ("X-Forwarded-Port", "x-forwarded-prefix", "X_Forwarded_Server"):
        assert b.covers(name)
    assert not b.covers("X-Forwarded-Port", trust_forwarded=True)
    assert not b.covers("x-forwarded-prefix", trust_forwarded=True)
    assert b.covers("X-Forwarded-For", trust_forwarded=True)  # the gateway sets these itself
    assert b.covers("X-Forwarded-User", trust_forwarded=True)  # identities even from trusted proxies


def test_keep_and_strip_change_what_is_covered():
    b = boundary(ClientHeaders(keep=("X-Real-IP",), strip=("X-Tenant",)))
    assert not b.covers("X-Real-IP") and not b.covers("x-real-ip")
    assert b.covers("X-Tenant") and b.covers("x-tenant")
    assert "X-Real-IP" not in b.names and "X-Tenant" in b.names
