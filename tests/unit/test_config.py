"""Configuration: every problem reported with its location; env interpolation; durations."""
from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import ConfigError, load_config, parse_config, parse_duration
from gateway.routing import shadowed_routes
from tests.conftest import ROOT, SECRET


def problems_of(raw: dict, tmp_path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(raw, tmp_path)
    return info.value.problems


def minimal(**extra):
    return {"tokens": {"secret": SECRET}, "users_file": "users.yaml", **extra}


@pytest.mark.parametrize("text,seconds", [("30s", 30), ("15m", 900), ("14d", 1209600), ("250ms", 0.25), (5, 5), ("2h", 7200)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["15 minutes", "-1s", "1y", True, ""])
def test_bad_durations(bad):
    with pytest.raises(ValueError):
        parse_duration(bad)


def test_example_config_is_valid():
    config = load_config(ROOT / "config" / "example.yaml")
    assert config.tokens.access_lifetime == 900 and config.tokens.refresh_lifetime == 14 * 86400
    assert [r.name for r in config.routes] == ["admin", "api", "public"]
    assert config.users_file == ROOT / "config" / "users.yaml"


def test_defaults(tmp_path):
    config = parse_config(minimal(), tmp_path)
    assert config.store.backend == "memory" and config.listen.port == 8080
    assert config.tokens.refresh_grace == 10 and config.endpoints.token == "/auth/token"
    assert config.identity_header_prefixes == ("X-User-", "X-Auth-")


def test_every_problem_is_reported_with_its_location(tmp_path):
    raw = minimal(
        listen={"port": "eighty"},
        store={"backend": "redis"},
        routes=[
            {"prefix": "/a", "upstream": "http://ok"},
            {"prefix": "/b", "upstream": "http://ok", "timeout": "soon"},
            {"prefix": "/c", "upstream": "ftp://nope"},
            {"prefix": "no-slash", "upstream": "http://ok", "bogus": 1},
        ],
    )
    found = problems_of(raw, tmp_path)
    assert "routes[2].upstream: not an absolute http(s) URL without query or fragment (got 'ftp://nope')" in found
    assert any(p.startswith("routes[1].timeout: not a duration") for p in found)
    assert any(p.startswith("routes[3].bogus: unknown key (expected one of: ") and "upstream" in p for p in found)
    assert any(p.startswith("routes[3].prefix:") for p in found)
    assert any(p.startswith("listen.port:") for p in found)
    assert any(p.startswith("store:") and "url" in p for p in found)


@pytest.mark.parametrize(
    "tokens,needle",
    [
        ({"secret": "short"}, "at least 32 bytes"),
        ({"secret": SECRET, "algorithm": "none"}, "tokens.algorithm"),
        ({"secret": SECRET, "access_lifetime": "30d"}, "must not exceed"),
    ],
)
def test_token_settings_are_checked(tmp_path, tokens, needle):
    assert any(needle in p for p in problems_of(minimal(tokens=tokens), tmp_path))


def test_route_consistency(tmp_path):
    found = problems_of(
        minimal(routes=[
            {"prefix": "/a", "upstream": "http://x", "auth": "none", "headers": {"X-User-Id": "sub"}},
            {"prefix": "/b", "upstream": "http://x", "auth": "optional", "require": {"roles_any": ["admin"]}},
            {"prefix": "/c", "upstream": "http://x", "headers": {"Host": "sub"}},
        ]),
        tmp_path,
    )
    assert any(p.startswith("routes[0]:") and "no identity" in p for p in found)
    assert any(p.startswith("routes[1]:") and "auth: required" in p for p in found)
    assert any(p.startswith("routes[2].headers:") for p in found)
    duplicates = [{"name": "d", "prefix": "/d", "upstream": "http://x"}, {"name": "d", "prefix": "/e", "upstream": "http://x"}]
    assert "routes: duplicate route names ['d']" in problems_of(minimal(routes=duplicates), tmp_path)


def test_env_interpolation(tmp_path, monkeypatch):
    monkeypatch.setenv("GW_TEST_SECRET", SECRET)
    monkeypatch.delenv("GW_UNSET", raising=False)
    config = parse_config(
        {"tokens": {"secret": "${GW_TEST_SECRET}", "issuer": "${GW_UNSET:-fallback}"}, "users_file": "u.yaml"}, tmp_path
    )
    assert config.tokens.secret.get_secret_value() == SECRET and config.tokens.issuer == "fallback"
    # one problem for one unset variable (not a second one for the empty secret it leaves)
    assert problems_of({"tokens": {"secret": "${GW_UNSET}"}, "users_file": "u.yaml"}, tmp_path) == [
        "tokens.secret: environment variable GW_UNSET is not set (or write ${GW_UNSET:-default})"]


def test_secret_never_shows_in_repr(tmp_path):
    config = parse_config(minimal(), tmp_path)
    assert SECRET not in repr(config) and SECRET not in str(config.model_dump())


def test_yaml_syntax_error_has_a_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("tokens:\n  secret: [unclosed\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert f"{path}:" in info.value.problems[0] and "invalid YAML" in info.value.problems[0]


def test_problems_name_file_line_key_value_and_what_is_expected(tmp_path, monkeypatch):
    monkeypatch.delenv("GW_NOPE", raising=False)
    path = tmp_path / "gw.yaml"
    path.write_text(
        "users_file: u.yaml\n"
        "tokens:\n"
        "  secret: ${GW_NOPE}\n"
        "routes:\n"
        "  - name: api\n"
        "    prefix: /api\n"
        "    upstreem: http://127.0.0.1:9001\n"
        "    require:\n"
        "      roles_any: admin\n"
        "  - prefix: /b\n"
        "    upstream: 127.0.0.1:9001\n"
        "store: {backend: redis, url: 'redis://:hunter2-password@x:6379', bogus_key: 1}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.problems == [
        f"{path}:3: tokens.secret: environment variable GW_NOPE is not set (or write ${{GW_NOPE:-default}})",
        f"{path}:5: routes[0].upstream: required",
        f"{path}:7: routes[0].upstreem: unknown key; did you mean 'upstream'?",
        f"{path}:9: routes[0].require.roles_any: must be a list, e.g. [a, b] (a single value too: [a]) (got 'admin')",
        f"{path}:11: routes[1].upstream: not an absolute URL: add the scheme, e.g. http://127.0.0.1:9001 (got '127.0.0.1:9001')",
        f"{path}:12: store.bogus_key: unknown key (expected one of: backend, failure_mode, prefix, revocation_cache, "
        "timeout, url)",
    ]
    assert "hunter2" not in "".join(info.value.problems)


def test_an_unquoted_default_in_a_flow_sequence_says_to_quote_it(tmp_path):
    path = tmp_path / "gw.yaml"
    path.write_text("identity_header_prefixes: [${PREFIX:-X-User-}]\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    (problem,) = info.value.problems
    assert problem.startswith(f"{path}:1:") and "must be quoted: '${VAR:-default}'" in problem


def test_secrets_are_never_echoed(tmp_path):
    found = problems_of({"tokens": {"secret": 12345678901234567890123456789012345}, "users_file": "u.yaml"}, tmp_path)
    assert found and not any("1234567890" in p for p in found)


def test_shadowed_routes_are_reported(tmp_path):
    config = parse_config(minimal(routes=[
        {"prefix": "/api", "upstream": "http://x"},
        {"prefix": "/api/admin", "upstream": "http://y"},
        {"prefix": "/apix", "upstream": "http://y"},
        {"prefix": "/other", "upstream": "http://y", "methods": ["GET"]},
        {"prefix": "/other", "upstream": "http://y", "methods": ["POST"]},
    ]), tmp_path)
    warnings = shadowed_routes(config.routes)
    assert len(warnings) == 1 and warnings[0].startswith("routes[1]")


def test_users_file_problems(tmp_path):
    from gateway.sources.users import load_users

    path = tmp_path / "users.yaml"
    path.write_text("users:\n  eve:\n    password_hash: plain\n    claims: {sub: admin}\n")
    with pytest.raises(ConfigError) as info:
        load_users(path)
    text = "\n".join(info.value.problems)
    assert "users.eve.password_hash: not an argon2 hash" in text and "users.eve.claims: ['sub']" in text


def test_a_missing_ldap_ca_file_is_a_problem_not_a_traceback(tmp_path):
    """ldap3 reads the CA file when the source is built; `gateway check` reports it like any other key."""
    raw = {"tokens": {"secret": SECRET},
           "users": [{"ldap": {"url": "ldaps://ldap.example.com", "ca_file": "certs/ldap-ca.pem",
                               "user_base": "ou=people,dc=example,dc=com"}}]}
    assert any("users[0].ldap.ca_file: no such file" in p for p in problems_of(raw, tmp_path))
    (tmp_path / "certs").mkdir()
    (tmp_path / "certs" / "ldap-ca.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    parse_config(raw, tmp_path)  # relative to the config file's folder
