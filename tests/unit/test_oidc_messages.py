"""What the OIDC sign-in tells an operator: the provider's OAuth errors made harmless for a log line and a page."""
from __future__ import annotations

from gateway.auth.oidc import MAX_DESCRIPTION, ProviderClient, oauth_error
from gateway.auth.oidc_tokens import _algorithm_refusal
from gateway.config.oidc import OidcProvider

CODE = "SplxlOBeZQQYbYS6WxSbIA"
SECRET = "client-secret-0123456789abcdef"


def test_the_providers_error_and_description_are_kept():
    error = oauth_error("invalid_client", "client authentication failed", [CODE, SECRET])
    assert (error.code, error.description) == ("invalid_client", "client authentication failed")
    assert str(error) == "invalid_client: client authentication failed"
    assert str(oauth_error("invalid_grant", None, [])) == "invalid_grant"


def test_nothing_secret_nothing_unbounded_nothing_unprintable():
    jws = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLXZhbHVl"
    error = oauth_error("invalid_grant\r\n<b>", f"code {CODE} with secret {SECRET} and {jws}\n\x1b[31m<script>",
                        [CODE, SECRET])
    text = str(error)
    assert CODE not in text and SECRET not in text and jws not in text and "[redacted]" in text
    assert error.code == "invalid_grantb" and all(0x20 <= ord(c) < 0x7F for c in text)
    long = oauth_error("x" * 500, "y" * 10_000, [])
    assert len(long.code) == 64 and len(long.description) == MAX_DESCRIPTION
    assert oauth_error("", "", []).code == "unknown_error"


def test_an_issuer_mismatch_shows_both_issuers_and_spots_a_trailing_slash():
    settings = OidcProvider(issuer="https://idp.example.com/realms/main", client_id="gw", client_secret=SECRET)
    client = ProviderClient("corp", settings, 5, 300)
    url = "https://idp.example.com/realms/main/.well-known/openid-configuration"
    slash = client._issuer_mismatch(url, "https://idp.example.com/realms/main/")
    assert (slash.status, slash.code) == (502, "provider_misconfigured")
    assert "https://idp.example.com/realms/main," in slash.detail and "trailing slash" in slash.detail
    other = client._issuer_mismatch(url, "https://evil.example\n" + "x" * 1000)
    assert "https://evil.example?" in other.detail and "trailing slash" not in other.detail and len(other.detail) < 400
    assert "no issuer (NoneType)" in client._issuer_mismatch(url, None).detail


def test_a_refused_algorithm_says_why_and_what_to_change():
    settings = OidcProvider(issuer="https://idp.example.com", client_id="gw", client_secret=SECRET)
    client = ProviderClient("corp", settings, 5, 300)
    hs = _algorithm_refusal("ID token", "HS256", client)
    assert hs.startswith("ID token signed with HS256;") and "asymmetric algorithm (RS256/PS256/ES256) from its JWKS" in hs
    assert "not signed (alg none)" in _algorithm_refusal("Logout token", "nOnE", client)
    assert "oidc.providers.corp.algorithms" in _algorithm_refusal("ID token", "ES384", client)
    assert "\n" not in _algorithm_refusal("ID token", "RS1\n" + "x" * 100, client)


def test_a_secret_straddling_any_cut_leaves_no_prefix():
    """Whitespace collapsing can bring a far secret under the limit: it is redacted whole, wherever it stands."""
    for pad in range(4 * MAX_DESCRIPTION - len(SECRET), 4 * MAX_DESCRIPTION + 2):
        text = str(oauth_error("invalid_client", " " * pad + SECRET, [SECRET]))
        assert SECRET[:8] not in text, pad
