"""Second-factor pieces without sockets: TOTP windows and normalisation (against pyotp's own codes at fixed times),
recovery codes, the step-up rule of route requirements, who must have a factor, and reload refusing a changed
credentials section."""
from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pyotp
import pytest

from gateway.config import ConfigError, Requirements, parse_config
from gateway.factors import recovery
from gateway.factors.totp import Totp, normalise_code
from gateway.server.reload import restart_only_changes
from tests.support.clock import memory_store

SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
NOW = 1_800_000_015.0  # 15 s into a step


def test_a_code_matches_its_step_within_the_window_only() -> None:
    totp = Totp(memory_store(), 1, "Gateway")
    otp = pyotp.TOTP(SECRET)
    step = int(NOW // 30)
    assert totp.matching_step(SECRET, otp.at(NOW), NOW) == step
    assert totp.matching_step(SECRET, otp.at(NOW - 30), NOW) == step - 1
    assert totp.matching_step(SECRET, otp.at(NOW + 30), NOW) == step + 1
    assert totp.matching_step(SECRET, otp.at(NOW - 60), NOW) is None
    assert totp.matching_step(SECRET, otp.at(NOW + 60), NOW) is None
    assert Totp(memory_store(), 0, "G").matching_step(SECRET, otp.at(NOW - 30), NOW) is None


def test_each_step_is_accepted_once_per_user() -> None:
    async def run() -> list[bool]:
        totp = Totp(memory_store(), 1, "Gateway")
        code = pyotp.TOTP(SECRET).at(NOW)
        return [await totp.accept("alice", SECRET, code, NOW), await totp.accept("alice", SECRET, code, NOW),
                await totp.accept("bob", SECRET, code, NOW), await totp.accept("alice", SECRET, "12345", NOW)]

    assert asyncio.run(run()) == [True, False, True, False]


def test_codes_are_read_as_six_ascii_digits() -> None:
    assert normalise_code("123 456") == "123456" and normalise_code("123-456") == "123456"
    for bad in ("12345", "1234567", "١٢٣٤٥٦", "12a456", 123456, None, "1" * 100):
        assert normalise_code(bad) is None


def test_the_provisioning_uri_and_qr_code() -> None:
    shown = Totp(memory_store(), 1, "Acme Gateway").provisioning(SECRET, "alice")
    assert shown["otpauth_uri"].startswith("otpauth://totp/Acme%20Gateway:alice?secret=" + SECRET)
    assert shown["qr_code"].startswith("data:image/svg+xml")


def test_recovery_codes_are_unique_hashed_and_matched_by_name() -> None:
    codes = recovery.generate(10)
    assert len(set(codes)) == 10 and all(len(c) == 19 and c.count("-") == 3 for c in codes)

    async def run() -> tuple[Any, ...]:
        hashes = await recovery.hash_codes(codes[:3])
        assert all(h.startswith("$argon2id$") and codes[i] not in h for i, (_, h) in enumerate(hashes))
        return (await recovery.verify(codes[1].upper(), hashes), await recovery.verify(codes[5], hashes),
                await recovery.verify("not a code", hashes), await recovery.verify(codes[0], []))

    assert asyncio.run(run()) == ("02", None, None, None)


def test_step_up_requirements() -> None:
    require = Requirements(amr_any=("otp",), max_auth_age=600)
    assert require.step_up({"amr": ["pwd", "otp", "mfa"], "auth_time": 1000}, 1599, {}) is None
    assert require.step_up({"amr": ["pwd", "otp", "mfa"], "auth_time": 1000}, 1600, {}) == "This route needs a more recent login"
    assert require.step_up({"amr": ["pwd"], "auth_time": 1000}, 1001, {}) == "This route needs a login with a second factor"
    assert require.step_up({"amr": "otp"}, 1001, {}) == "This route needs a more recent login"  # no auth_time: too old
    assert require.refusal({"amr": ["pwd"]}) is None  # step-up is no 403
    assert require.acr_values == "otp" and Requirements(acr="mfa").acr_values == "mfa"
    assert Requirements().step_up({}, 0, {}) is None and Requirements().auth_deadline({"auth_time": 5}) is None


def test_a_level_is_its_amr_values_or_a_trusted_acr() -> None:
    levels = {"mfa": ("otp", "hwk", "swk"), "phishing_resistant": ("hwk",)}
    strong = Requirements(acr="phishing_resistant")
    assert strong.meets_level({"amr": ["hwk", "mfa"]}, levels)
    assert not strong.meets_level({"amr": ["pwd", "otp", "mfa"]}, levels)
    assert not strong.meets_level({"amr": ["pwd"], "acr": "mfa"}, levels)  # another level's acr is not this one
    assert strong.meets_level({"acr": "phishing_resistant"}, levels)  # set only from a trusted provider's assertion
    assert Requirements(acr="mfa").step_up({"amr": ["pwd", "otp"]}, 0, levels) is None
    assert not Requirements(acr="mfa").meets_level({"amr": ["pwd"]}, {})  # a level that is not configured: never met


def test_levels_are_checked_at_load(tmp_path: Path, users_file: Path) -> None:
    route = {"name": "pay", "prefix": "/pay", "upstream": "http://127.0.0.1:9"}
    with pytest.raises(ConfigError, match=r"'gold' is not a level of second_factor.levels \(mfa, phishing_resistant\)"):
        config(tmp_path, users_file, routes=[{**route, "require": {"acr": "gold"}}])
    with pytest.raises(ConfigError, match="give acr .* or amr_any, not both"):
        config(tmp_path, users_file, routes=[{**route, "require": {"acr": "mfa", "amr_any": ["otp"]}}])
    with pytest.raises(ConfigError, match=r"\['otpp'\] are not RFC 8176 amr values"):
        config(tmp_path, users_file, credentials={"url": "sqlite:///a.db", "keys": [{"id": "k", "secret": "y" * 40}]},
               second_factor={"levels": {"mfa": ["otpp"]}})
    with pytest.raises(ConfigError, match="require: needs auth: required or basic"):
        config(tmp_path, users_file, routes=[{**route, "auth": "none", "require": {"acr": "mfa"}}])
    parsed = config(tmp_path, users_file, credentials={"url": "sqlite:///a.db", "keys": [{"id": "k", "secret": "y" * 40}]},
                    second_factor={"levels": {"gold": ["hwk"]}}, routes=[{**route, "require": {"acr": "gold"}}])
    assert parsed.levels == {"gold": ("hwk",)} and parsed.routes[0].require.acr == "gold"
    assert config(tmp_path, users_file).levels["mfa"] == ("mfa", "otp", "hwk", "swk")  # the default without the section
    with pytest.raises(ConfigError, match="'amr' is set by the gateway"):
        config(tmp_path, users_file, public_url="https://gw.example", oidc={"providers": {"corp": {
            "issuer": "https://op.example", "client_id": "gw", "client_secret": "s", "claims": {"amr": "amr"}}}})


def test_a_providers_own_acr_names_are_checked_at_load_and_map_both_ways(tmp_path: Path, users_file: Path) -> None:
    def provider(acr_values: dict[str, str]) -> Any:
        spec = {"issuer": "https://op.example", "client_id": "gw", "client_secret": "s", "trust_authentication": True,
                "acr_values": acr_values}
        return config(tmp_path, users_file, public_url="https://gw.example",
                      oidc={"providers": {"corp": spec}}).oidc.providers["corp"]

    with pytest.raises(ConfigError, match=r"oidc.providers.corp.acr_values: 'platinum' is not a level"):
        provider({"platinum": "gold"})
    with pytest.raises(ConfigError, match="two levels share a provider acr value"):
        provider({"mfa": "gold", "phishing_resistant": "gold"})
    with pytest.raises(ConfigError, match="one non-empty token"):
        provider({"mfa": "gold silver"})
    corp = provider({"mfa": "gold"})
    assert (corp.level_acr("mfa"), corp.level_acr("phishing_resistant")) == ("gold", "phishing_resistant")
    assert corp.level_of("gold") == "mfa" and corp.level_of("phishing_resistant") == "phishing_resistant"
    assert corp.level_of("mfa") is None  # the gateway's name for a level this provider calls otherwise


def config(tmp_path: Path, users_file: Path, **extra: Any) -> Any:
    raw = {"tokens": {"secret": "x" * 40}, "users_file": str(users_file), **extra}
    return parse_config(raw, tmp_path)


def test_a_changed_credentials_section_needs_a_restart(tmp_path: Path, users_file: Path) -> None:
    key = {"id": "k1", "secret": "y" * 40}
    one = config(tmp_path, users_file, credentials={"url": "sqlite:///a.db", "keys": [key]})
    rotated = config(tmp_path, users_file, credentials={"url": "sqlite:///a.db", "keys": [{"id": "k2", "secret": "z" * 40}, key]})
    assert restart_only_changes(one, one) == []
    assert any(p.startswith("credentials:") for p in restart_only_changes(one, rotated))


def test_who_must_have_a_factor(tmp_path: Path, users_file: Path) -> None:
    from gateway.factors.flow import FactorGate
    from gateway.factors.store import CredentialStore

    store = memory_store()
    parsed = config(tmp_path, users_file, credentials={"url": "sqlite:///a.db", "keys": [{"id": "k", "secret": "y" * 40}]},
                    second_factor={"roles": ["admin"], "groups": ["finance"]})
    gate = FactorGate(parsed.second_factor, CredentialStore.from_config(parsed.credentials), store, store)
    assert gate.required_for({"roles": ["user", "admin"]}) and gate.required_for({"groups": "finance"})
    assert not gate.required_for({"roles": ["user"], "groups": ["ops"]}) and not gate.required_for({})


def test_only_the_gateway_says_how_a_user_logged_in(tmp_path: Path) -> None:
    """amr, auth_time, acr and idp are login claims: a users file that sets one is refused at load, since a
    provider session without amr (untrusted) would otherwise carry the file's."""
    from gateway.sources.users import hash_password, load_users

    path = tmp_path / "users.yaml"
    path.write_text(f"users:\n  eve:\n    password_hash: '{hash_password('pw')}'\n    claims: {{amr: [otp], acr: mfa}}\n")
    with pytest.raises(ConfigError, match=r"\['acr', 'amr'\] are set by the gateway"):
        load_users(path)
