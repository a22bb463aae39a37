"""The one ``next`` check (gateway.auth.redirects.safe_next), and the OIDC configuration's rules.

Hypothesis checks the property that matters against real URL parsers: whatever
``safe_next`` accepts, resolved against a page of the gateway the way a
browser does (tabs and newlines dropped, ``\\`` read as ``/``) by urllib and by
yarl, stays on the gateway's origin or an allowed one.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urljoin, urlsplit

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from yarl import URL

from gateway.auth.redirects import page_next, safe_next
from gateway.config import ConfigError, parse_config

PUBLIC = "https://gw.example.com"
ALLOWED = ("https://spa.example.com",)
ORIGINS = {"https://gw.example.com", "https://spa.example.com"}
PIECES = ["/", "//", "\\", "%2F", "%2f", "%5C", "%5c", "%252F", "%2E", ".", "..", ":", "@", "?", "#", "\t", "\n", "\r", " ",
          "evil.example", "gw.example.com", "spa.example.com", "https:", "http:", "javascript:", "HTTPS://", "%09", "%00",
          "\u3002", "\uff0f", "a", "x"]


def browser_origins(value: str) -> set[str]:
    """Where a browser would go, read by two parsers after the WHATWG pre-processing."""
    cleaned = re.sub(r"[\t\n\r]", "", value).strip("\x00 ").replace("\\", "/")
    out = set()
    for candidate in (cleaned, unquote(cleaned)):
        split = urlsplit(urljoin(PUBLIC + "/a/page", candidate))
        out.add(f"{split.scheme}://{split.netloc}".lower())
        resolved = URL(PUBLIC + "/a/page").join(URL(candidate, encoded=True))
        out.add(str(resolved.origin()).lower())
    return {origin.removesuffix(":") for origin in out}  # an empty port is the scheme's default one (WHATWG URL)


@settings(max_examples=500, deadline=None)
@given(st.lists(st.sampled_from(PIECES), max_size=8).map("".join))
@example("/%2F%2Fevil.example")
@example("/\\evil.example")
@example("https:evil.example")
@example("/..//evil.example")
@example("HTTPS://gw.example.com:")
@example("https://evil.example:")
def test_whatever_passes_stays_on_an_allowed_origin(value: str) -> None:
    try:
        result = safe_next(value, PUBLIC, ALLOWED)
    except ValueError:
        return
    assert browser_origins(result) <= ORIGINS, value


@given(st.text(max_size=60))
def test_arbitrary_text_never_crashes(value: str) -> None:
    try:
        result = safe_next(value, PUBLIC, ALLOWED)
    except ValueError:
        return
    assert browser_origins(result) <= ORIGINS


@pytest.mark.parametrize("bad", [
    "//evil.example", "///evil.example", "https:evil.example", "https:/evil.example", "/\\evil.example", "\\\\evil.example",
    "https://evil.example/", "HTTPS://EVIL.EXAMPLE", "/%2F%2Fevil.example", "/%2f/evil.example", "/%5Cevil.example",
    "/%255C%255Cevil.example", "/\t/evil.example", "/\n/evil.example", "/..//evil.example", "/a/../../evil",
    "/%2e%2e//evil.example", "javascript:alert(1)", "data:text/html,x", "https://gw.example.com@evil.example/",
    "https://evil.example#@gw.example.com", "evil.example", "", "/x\x00", "https://spa.example.com:444/",
    "http://gw.example.com/", "/" + "a" * 3000, "/caf\u00e9", "/\u2028evil",
])
def test_refused(bad: str) -> None:
    if bad == "":
        assert safe_next(bad, PUBLIC, ALLOWED) == "/"
        return
    with pytest.raises(ValueError):
        safe_next(bad, PUBLIC, ALLOWED)


@pytest.mark.parametrize("good", ["/", "/app", "/app/page?x=1&y=%2F#frag", "https://gw.example.com/x",
                                  "https://spa.example.com/app?q=1", "HTTPS://SPA.EXAMPLE.COM/", "/caf%C3%A9"])
def test_accepted(good: str) -> None:
    assert safe_next(good, PUBLIC, ALLOWED) == good


def test_absent_next_is_the_root() -> None:
    assert safe_next(None, PUBLIC) == "/"


def refused_because(value: object, public: str | None = PUBLIC, allowed: tuple[str, ...] = ALLOWED) -> str:
    with pytest.raises(ValueError) as info:
        safe_next(value, public, allowed)
    return str(info.value)


@pytest.mark.parametrize("bad, reason", [
    ("/.//evil.example", "next: dot segments are not accepted"),
    ("/./x", "next: dot segments are not accepted"),
    ("/x/.", "next: dot segments are not accepted"),
    ("/x/..?a", "next: dot segments are not accepted"),
    ("/x/..#a", "next: dot segments are not accepted"),
    ("/%2E%2E/x", "next: dot segments are not accepted"),
    ("/%252E%252E/x", "next: dot segments are not accepted"),
    ("//evil.example", "next: a path must not start with //"),
    ("/%2Fevil.example", "next: a path must not start with //"),
    ("/%25252F/evil.example", "next: a path must not start with //"),
    ("/x\\y", "next: contains a backslash, whitespace or a control character"),
    ("/x%20y", "next: contains a backslash, whitespace or a control character"),
    ("/x%7F", "next: contains a backslash, whitespace or a control character"),
    ("/x%C2%A0y", "next: contains a backslash, whitespace or a control character"),
    ("/x%E2%80%8By", "next: contains a backslash, whitespace or a control character"),
    ("/x%FF", "next: percent-encoding that is not UTF-8"),
    ("/caf\u00e9", "next: not a usable URL (percent-encode anything beyond ASCII)"),
    ("/" + "a" * 2048, "next: not a usable URL (percent-encode anything beyond ASCII)"),
    ("evil.example", "next: a relative path starting with / or an absolute URL of an allowed origin"),
    ("ftp://gw.example.com/", "next: a relative path starting with / or an absolute URL of an allowed origin"),
    ("https://gw.example.com@evil.example/", "next: not a usable URL"),
    ("https://gw.example.com%2Eevil.example/", "next: not a usable URL"),
    ("https://gw.example.com/a b", "next: not a usable URL"),
    ("https://gw.example.com:99999/", "next: not a usable URL"),
    ("https://evil.example/", "next: this origin is not in oidc.allowed_redirect_origins"),
    ("https://gw.example.com/.//evil.example", "next: dot segments are not accepted"),
    ("https://gw.example.com//evil.example", "next: a path must not start with //"),
])
def test_each_refusal_names_its_rule(bad: str, reason: str) -> None:
    assert refused_because(bad) == reason


def test_a_pages_query_gives_one_next_or_none() -> None:
    assert page_next([], PUBLIC) is None
    assert page_next(["/app/x?y=1"], PUBLIC) == "/app/x?y=1"
    assert page_next([PUBLIC + "/app"], PUBLIC) == PUBLIC + "/app"  # the gateway's own origin
    assert page_next([ALLOWED[0] + "/app"], PUBLIC, ALLOWED) == ALLOWED[0] + "/app"  # an allowed one
    with pytest.raises(ValueError, match="^next: given more than once$"):  # two parsers, two answers: refused
        page_next(["/app", "https://evil.example/"], PUBLIC, ALLOWED)
    with pytest.raises(ValueError, match="not in oidc.allowed_redirect_origins"):
        page_next(["https://evil.example/"], PUBLIC, ALLOWED)


def test_non_text_is_refused() -> None:
    assert refused_because(42) == "next: not a usable URL (percent-encode anything beyond ASCII)"
    assert refused_because(["/x"]) == "next: not a usable URL (percent-encode anything beyond ASCII)"


def test_length_limit_is_2048() -> None:
    longest = "/" + "a" * 2047
    assert safe_next(longest, PUBLIC) == longest


def test_four_decodings_at_most() -> None:
    assert safe_next("/%252525252E%252525252E/x", PUBLIC) == "/%252525252E%252525252E/x"  # still %2E after four decodings
    assert refused_because("/%2525252E%2525252E/x") == "next: dot segments are not accepted"  # .. after the fourth


def test_origins_come_from_public_url_and_the_allow_list() -> None:
    assert safe_next("https://GW.example.com:443/x", PUBLIC) == "https://GW.example.com:443/x"
    assert safe_next("https://gw.example.com", PUBLIC) == "https://gw.example.com"
    assert safe_next("https://spa.example.com/x", None, ALLOWED) == "https://spa.example.com/x"
    assert refused_because("https://gw.example.com/x", None, ALLOWED) == "next: this origin is not in oidc.allowed_redirect_origins"
    assert refused_because("https://spa.example.com/x", PUBLIC, ()) == "next: this origin is not in oidc.allowed_redirect_origins"
    assert safe_next("/x", None) == "/x"
    assert safe_next("", None) == "/"


# -- configuration ---------------------------------------------------------------------------

def _config(tmp_path: Path, oidc: dict[str, Any], **extra: Any) -> Any:
    raw = {"tokens": {"secret": "s" * 40}, "users_file": str(tmp_path / "u.yaml"), "public_url": PUBLIC, "oidc": oidc, **extra}
    (tmp_path / "u.yaml").write_text("users: {}\n")
    return parse_config(raw, tmp_path)


def _provider(**extra: Any) -> dict[str, Any]:
    return {"issuer": "https://idp.example.com", "client_id": "gw", "client_secret": "secret", **extra}


@pytest.mark.parametrize("provider, message", [
    (_provider(issuer="http://idp.example.com"), "must be https"),
    (_provider(client_secret=None), "give one of client_secret"),
    (_provider(private_key_file="k.pem"), "only one of"),
    (_provider(client_secret=None, private_key_file="k.pem"), "private_key_id: required"),
    (_provider(scopes=["email"]), "must include openid"),
    (_provider(claims={"sub": "email"}), "set by the gateway"),
    (_provider(claims={"exp": "x"}), "set by the gateway"),
    (_provider(extra_params={"state": "x"}), "set by the gateway"),
    (_provider(algorithms=["HS256"]), "algorithms"),
    (_provider(algorithms=["none"]), "algorithms"),
    (_provider(allowed_email_domains=["example.com"], allow_unverified_email=True), "allow_unverified_email"),
    (_provider(allowed_groups=["x"]), "needs the groups claim"),
    (_provider(client_auth="private_key_jwt"), "needs private_key_file"),
])
def test_provider_problems(tmp_path: Path, provider: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        _config(tmp_path, {"providers": {"corp": provider}})
    assert message in str(err.value)


def test_public_url_is_required_and_names_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        _config(tmp_path, {"providers": {"corp": _provider()}}, public_url=None)
    assert "public_url: required with oidc.providers" in str(err.value)
    with pytest.raises(ConfigError) as err:
        _config(tmp_path, {"providers": {"Corp": _provider()}})
    assert "not usable names" in str(err.value)


def test_collisions_and_logins(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        _config(tmp_path, {"providers": {"corp": _provider()}}, endpoints={"oidc": "/auth", "logout": "/auth/exchange"},
                routes=[{"prefix": "/x", "upstream": "http://127.0.0.1:1", "login": "nope"},
                        {"prefix": "/y", "upstream": "http://127.0.0.1:1", "login": "signin", "auth": "none"}])
    text = str(err.value)
    assert "/auth/exchange is already served" in text
    assert "routes[0].login" in text and "routes[1].login: a route with auth: none" in text


def test_signin_is_a_reserved_provider_name_and_state_secret_is_needed_without_a_shared_secret(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        _config(tmp_path, {"providers": {"signin": _provider()}})
    assert "reserved for the sign-in page" in str(err.value)


def test_a_valid_provider(tmp_path: Path) -> None:
    config = _config(tmp_path, {"providers": {"corp": _provider(allowed_email_domains=["@Example.COM"])},
                                "allowed_redirect_origins": ["https://SPA.example.com"]})
    corp = config.oidc.providers["corp"]
    assert corp.allowed_email_domains == ("example.com",) and corp.auth_method == "client_secret_basic"
    assert config.oidc.allowed_redirect_origins == ("https://spa.example.com",)


def test_gateway_check_reads_the_providers_secret_and_key_files(tmp_path: Path) -> None:
    import yaml

    from gateway.check import load_all

    (tmp_path / "u.yaml").write_text("users: {}\n")
    raw = {"tokens": {"secret": "s" * 40}, "users_file": "u.yaml", "public_url": PUBLIC,
           "oidc": {"providers": {"corp": {"issuer": "https://idp.example.com", "client_id": "gw",
                                           "client_secret_file": "missing.txt"},
                                  "pk": {"issuer": "https://idp.example.com", "client_id": "gw",
                                         "private_key_file": "bad.pem", "private_key_id": "k"}}}}
    (tmp_path / "bad.pem").write_text("not a key")
    (tmp_path / "gw.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError) as err:
        load_all(tmp_path / "gw.yaml")
    assert "oidc.providers.corp: cannot read" in str(err.value) and "oidc.providers.pk: cannot read" in str(err.value)
