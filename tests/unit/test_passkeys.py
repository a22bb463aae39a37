"""WebAuthn ceremonies (gateway/factors/passkeys.py) verified by the real `webauthn` library against a software
authenticator (tests/support/authenticator.py) and a real SQLite credentials store: registration of several named
authenticators, the second step, passkey login, and the hostile answers (another challenge, RP ID or origin, a
cloned authenticator, no user verification, a challenge of another user or login, an expired one)."""
from __future__ import annotations

from pathlib import Path
from typing import AsyncIterator

import pytest

from gateway.config.factors import CredentialStoreSettings, SealingKey, WebAuthnSettings
from gateway.factors.passkeys import CeremonyError, CloneSuspected, Passkeys, relying_party
from gateway.factors.store import CredentialStore
from tests.support.authenticator import SoftAuthenticator
from tests.support.clock import elapse, memory_store

PUBLIC_URL = "https://localhost:8443"
ORIGIN = "https://localhost:8443"


@pytest.fixture
async def credentials(tmp_path: Path) -> AsyncIterator[CredentialStore]:
    key = SealingKey(id="k", secret="sealing-key-0123456789-0123456789-abc")  # type: ignore[arg-type]
    store = CredentialStore.from_config(CredentialStoreSettings(url=f"sqlite:///{tmp_path / 'c.db'}", keys=(key,)))
    await store.start()
    yield store
    await store.close()


def passkeys(credentials: CredentialStore, **settings: object) -> Passkeys:
    return Passkeys(WebAuthnSettings(**settings), PUBLIC_URL, credentials, memory_store())  # type: ignore[arg-type]


async def enrolled(keys: Passkeys, subject: str = "alice", name: str = "laptop", **kind: object) -> SoftAuthenticator:
    device = SoftAuthenticator(origin=ORIGIN, **kind)  # type: ignore[arg-type]
    options = await keys.registration_options(subject, "session-1")
    await keys.register(subject, "session-1", name, device.create(options))
    return device


def test_the_relying_party_is_public_urls_host_and_origin() -> None:
    assert relying_party("https://login.example.com:8443") == ("login.example.com", "https://login.example.com:8443")


async def test_several_named_authenticators_and_a_second_step(credentials: CredentialStore) -> None:
    keys = passkeys(credentials)
    laptop = await enrolled(keys)
    phone = await enrolled(keys, name="phone", backup_eligible=True)
    assert [a.name for a in await credentials.authenticators("alice")] == ["laptop", "phone"]
    options = await keys.registration_options("alice", "session-1")
    assert len(options["excludeCredentials"]) == 2 and options["authenticatorSelection"]["userVerification"] == "required"
    assert options["rp"]["id"] == "localhost" and options["attestation"] == "none"

    options = await keys.assertion_options("alice", "mfa-1")
    assert len(options["allowCredentials"]) == 2
    verified = await keys.authenticate("alice", "mfa-1", laptop.get(options))
    assert (verified.subject, verified.name, verified.amr) == ("alice", "laptop", "hwk")
    verified = await keys.authenticate("alice", "mfa-2", phone.get(await keys.assertion_options("alice", "mfa-2")))
    assert verified.amr == "swk", "a synced (backup-eligible) passkey is a software key"


async def test_a_challenge_is_single_use_and_bound_to_its_user_and_login(credentials: CredentialStore) -> None:
    keys = passkeys(credentials)
    device = await enrolled(keys)
    options = await keys.assertion_options("alice", "mfa-1")
    answer = device.get(options)
    with pytest.raises(CeremonyError, match="another ceremony, user or login"):
        await keys.authenticate("alice", "mfa-OTHER", answer)
    with pytest.raises(CeremonyError, match="unknown, used or expired"):
        await keys.authenticate("alice", "mfa-1", answer)  # the failed attempt spent it
    options = await keys.assertion_options("alice", "mfa-2")
    with pytest.raises(CeremonyError, match="another ceremony, user or login"):
        await keys.authenticate("bob", "mfa-2", device.get(options))
    options = await keys.registration_options("alice", "session-1")
    with pytest.raises(CeremonyError, match="another ceremony"):
        await keys.authenticate("alice", "session-1", device.get({"rpId": "localhost", "challenge": options["challenge"]}))


async def test_an_answer_for_another_challenge_rp_id_or_origin_is_refused(credentials: CredentialStore) -> None:
    keys = passkeys(credentials)
    device = await enrolled(keys)
    issued = await keys.assertion_options("alice", "mfa-1")
    with pytest.raises(CeremonyError, match="unknown, used or expired"):
        await keys.authenticate("alice", "mfa-1", device.get({**issued, "challenge": "bm90LWlzc3VlZA"}))
    device.rp_id = "evil.example"
    with pytest.raises(CeremonyError, match="RP ID"):
        await keys.authenticate("alice", "mfa-2", device.get(await keys.assertion_options("alice", "mfa-2")))
    device.rp_id, device.origin = None, "https://evil.example"
    with pytest.raises(CeremonyError, match="origin"):
        await keys.authenticate("alice", "mfa-3", device.get(await keys.assertion_options("alice", "mfa-3")))
    device.origin = ORIGIN
    assert (await keys.authenticate("alice", "mfa-4", device.get(await keys.assertion_options("alice", "mfa-4")))).subject


async def test_a_cloned_authenticator_is_refused_by_its_sign_count(credentials: CredentialStore) -> None:
    keys = passkeys(credentials)
    device = await enrolled(keys)
    await keys.authenticate("alice", "mfa-1", device.get(await keys.assertion_options("alice", "mfa-1"), count_step=5))
    with pytest.raises(CloneSuspected) as caught:
        await keys.authenticate("alice", "mfa-2", device.get(await keys.assertion_options("alice", "mfa-2"), count_step=-2))
    assert caught.value.authenticator.name == "laptop"
    stored = await credentials.authenticator(caught.value.authenticator.credential_id)
    assert stored is not None and stored.sign_count == 5


async def test_no_user_verification_is_a_downgrade_refused(credentials: CredentialStore) -> None:
    keys = passkeys(credentials)
    with pytest.raises(CeremonyError, match="[Uu]ser verification"):
        await enrolled(keys, user_verified=False)
    device = await enrolled(keys)
    device.user_verified = False
    with pytest.raises(CeremonyError, match="[Uu]ser verification"):
        await keys.authenticate("alice", "mfa-1", device.get(await keys.assertion_options("alice", "mfa-1")))


async def test_a_passkey_login_finds_its_user_and_needs_verification(credentials: CredentialStore) -> None:
    keys = passkeys(credentials, passkey_login=True)
    device = await enrolled(keys)
    options = await keys.assertion_options(None, "browser-1")
    assert "allowCredentials" not in options or options["allowCredentials"] == []
    assert options["userVerification"] == "required"
    verified = await keys.authenticate(None, "browser-1", device.get(options))
    assert verified.subject == "alice" and verified.user_verified
    device.user_handle = b"mallory"
    with pytest.raises(CeremonyError, match="user handle"):
        await keys.authenticate(None, "browser-2", device.get(await keys.assertion_options(None, "browser-2")))


async def test_an_aaguid_allow_list_and_expired_challenges(credentials: CredentialStore) -> None:
    keys = passkeys(credentials, aaguids=("ee882879-721c-4913-9775-3dfcce97072a",))
    with pytest.raises(CeremonyError, match="not in second_factor.webauthn.aaguids"):
        await enrolled(keys)
    keys = passkeys(credentials)
    device = await enrolled(keys)
    options = await keys.assertion_options("alice", "mfa-1")
    await elapse(keys.state, 121)  # type: ignore[arg-type]
    with pytest.raises(CeremonyError, match="unknown, used or expired"):
        await keys.authenticate("alice", "mfa-1", device.get(options))
