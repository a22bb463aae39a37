"""Service keys without a database: the key's shape and randomness, the claims a key may carry (a users-file user's
rules, reserved claims refused), and the configuration's checks (the header, the credentials store, route opt-in)."""
from __future__ import annotations

import re

import pytest

from gateway.auth.service_keys import check_claims, digest, generate_key
from gateway.config import ConfigError, GatewayConfig


def test_keys_are_long_random_and_hashed_with_sha256():
    keys = {generate_key() for _ in range(200)}
    assert len(keys) == 200
    for key in keys:
        assert re.fullmatch(r"gwsk_[A-Za-z0-9_-]{43}", key)
    key = next(iter(keys))
    assert re.fullmatch(r"[0-9a-f]{64}", digest(key)) and digest(key) != digest(key[:-1] + "x")


@pytest.mark.parametrize("claims", [{"sub": "root"}, {"exp": 1}, {"iss": "x"}, {"service_key": "other"}, [],
                                    {"roles": [1]}, {"roles": {"a": 1}}, {"": "x"}, {f"c{i}": 1 for i in range(33)},
                                    {"x": "y" * 2000}])
def test_claims_are_refused(claims):
    with pytest.raises(ValueError):
        check_claims(claims)


def test_claims_are_kept():
    claims = {"roles": ["reader", "sync"], "tenant": "acme", "tier": 2, "beta": True}
    assert check_claims(claims) == claims


def _config(tmp_path, upstream: str, **extra) -> GatewayConfig:
    from gateway.config import parse_config

    users = tmp_path / "users.yaml"
    users.write_text("users: {}\n")
    raw = {"tokens": {"secret": "x" * 40}, "users_file": str(users), "routes": [{"prefix": "/api", "upstream": upstream, **extra.pop("route", {})}],
           **extra}
    return parse_config(raw, tmp_path)


CREDENTIALS = {"url": "sqlite:///state/credentials.db", "keys": [{"id": "k1", "secret": "s" * 40}]}


@pytest.mark.parametrize("section, needle", [
    ({"service_keys": {"header": "Authorization"}, "credentials": CREDENTIALS}, "service_keys.header"),
    ({"service_keys": {"header": "X_Api_Key"}, "credentials": CREDENTIALS}, "service_keys.header"),
    ({"service_keys": {"cache": "10m"}, "credentials": CREDENTIALS}, "service_keys.cache"),
    ({"service_keys": {}}, "needs a credentials store"),
    ({"route": {"service_keys": True}}, "routes[0].service_keys"),
    ({"route": {"service_keys": True, "auth": "none"}, "service_keys": {}, "credentials": CREDENTIALS}, "checks no key"),
])
def test_configuration_checks(tmp_path, section, needle):
    with pytest.raises(ConfigError) as refused:
        _config(tmp_path, "http://127.0.0.1:9", **section)
    assert len(refused.value.problems) == 1 and needle in str(refused.value)


def test_a_configured_header_joins_the_client_boundary(tmp_path):
    from gateway.upstream.headers import client_boundary

    config = _config(tmp_path, "http://127.0.0.1:9", service_keys={"header": "X-Machine-Key"}, credentials=CREDENTIALS,
                     route={"service_keys": True})
    assert config.routes[0].service_keys and client_boundary(config).covers("x-machine-key")
    plain = _config(tmp_path, "http://127.0.0.1:9")
    assert not plain.routes[0].service_keys and not client_boundary(plain).covers("X-Api-Key")
