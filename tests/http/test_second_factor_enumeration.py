"""No enumeration of who has a second factor: before the password is proven, a wrong password for a user with TOTP,
one with a WebAuthn authenticator, one who must have a factor and has none yet, one without any, and an unknown
login get the same status, headers and body, and take the same time (many interleaved attempts, medians compared
with a wide margin: a noisy 2-core machine moves single timings, not medians)."""
from __future__ import annotations

import random
import statistics
import time
from pathlib import Path
from typing import Any

import pyotp
import pytest
from aiohttp.test_utils import TestClient

from tests.conftest import PASSWORDS, bearer, login
from tests.support.authenticator import SoftAuthenticator

KEY = "credentials-sealing-key-0123456789-abcdef"
PUBLIC_URL = "https://localhost:8443"
NO_LIMITS = {"per_user": 1000, "per_ip": 1000, "rate_per_ip": 1000}
ROUNDS = 15
MARGIN = 1.5  # fail only if one kind's median is more than this times another's


async def enrol_totp(client: TestClient, user: str) -> None:
    access = (await login(client, user))["access"]
    begun = await client.post("/auth/mfa/totp", headers=bearer(access))
    otp = pyotp.TOTP((await begun.json())["secret"])
    confirm = await client.post("/auth/mfa/totp/confirm", json={"code": otp.at(time.time() - 30)}, headers=bearer(access))
    assert confirm.status == 200, await confirm.text()


async def enrol_key(client: TestClient, user: str) -> None:
    access = (await login(client, user))["access"]
    begun = await client.post("/auth/mfa/webauthn", headers=bearer(access))
    device = SoftAuthenticator(origin=PUBLIC_URL)
    confirm = await client.post("/auth/mfa/webauthn/confirm", headers=bearer(access),
                                json={"name": "key", "credential": device.create((await begun.json())["publicKey"])})
    assert confirm.status == 200, await confirm.text()


def answer(status: int, headers: Any, body: bytes) -> tuple[Any, ...]:
    return status, headers.get("WWW-Authenticate"), headers.get("Content-Type"), headers.get("Cache-Control"), body


@pytest.mark.serial  # compares login timings: alone on the machine
@pytest.mark.timeout(240)
async def test_before_the_password_users_with_and_without_a_factor_and_unknown_ones_look_alike(
    make_gateway: Any, users_file: Path, tmp_path: Path,
) -> None:
    client = await make_gateway(
        public_url=PUBLIC_URL, login_throttle=NO_LIMITS,
        credentials={"url": f"sqlite:///{tmp_path / 'c.db'}", "keys": [{"id": "k1", "secret": KEY}]},
        second_factor={"roles": ["admin"], "webauthn": {}},  # alice (admin) must have one and has none
    )
    await enrol_totp(client, "bob")
    await enrol_key(client, "mallory")
    kinds = {"totp": "bob", "webauthn": "mallory", "required, none yet": "alice", "unknown": "nobody-at-all"}
    # the factors are real: the right password is answered second_factor_required for each user who has or needs one
    for user in ("bob", "mallory", "alice"):
        right = await client.post("/auth/token", json={"username": user, "password": PASSWORDS[user]})
        assert right.status == 401 and (await right.json())["code"] == "second_factor_required"

    answers: dict[str, set[tuple[Any, ...]]] = {kind: set() for kind in kinds}
    timings: dict[str, list[float]] = {kind: [] for kind in kinds}
    order = list(kinds)
    for round_ in range(ROUNDS):
        random.Random(round_).shuffle(order)
        for kind in order:
            started = time.perf_counter()
            resp = await client.post("/auth/token", json={"username": kinds[kind], "password": "not-the-password"})
            body = await resp.read()
            timings[kind].append(time.perf_counter() - started)
            answers[kind].add(answer(resp.status, resp.headers, body))
    distinct = set().union(*answers.values())
    assert len(distinct) == 1, answers  # one status, one challenge, one body for all
    assert next(iter(distinct))[0] == 401 and b"invalid_credentials" in next(iter(distinct))[-1]
    medians = {kind: statistics.median(t) for kind, t in timings.items()}
    shown = {kind: f"{m * 1000:.0f} ms" for kind, m in medians.items()}
    assert max(medians.values()) <= MARGIN * min(medians.values()), shown
