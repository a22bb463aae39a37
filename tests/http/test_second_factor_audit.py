"""Second-factor audit events: enrolment, a wrong code, a passed second step, a spent recovery code, a removal,
each one event with the user and no code, secret or mfa_token in any line."""
from __future__ import annotations

import logging
import time

from tests.conftest import bearer
from tests.http.test_second_factor import challenged, enrol, make_mfa, tokens_of  # noqa: F401 - make_mfa: a fixture


async def test_the_second_factor_events(make_mfa, caplog):  # noqa: F811 - the fixture imported above
    client = await make_mfa()
    caplog.set_level(logging.INFO, "gateway.audit")
    access = (await tokens_of(client))["access"]
    otp, recovery_codes = await enrol(client, access)
    first = await challenged(client)
    wrong = await client.post("/auth/token", json={"mfa_token": first["mfa_token"], "code": "000000"})
    assert wrong.status == 401
    right = await client.post("/auth/token", json={"mfa_token": first["mfa_token"], "code": otp.now()})
    assert right.status == 200, await right.text()
    second = await challenged(client)
    spent = await client.post("/auth/token", json={"mfa_token": second["mfa_token"], "recovery_code": recovery_codes[0]})
    assert spent.status == 200, await spent.text()
    fresh = (await right.json())["access"]
    removed = await client.delete("/auth/mfa/totp", headers=bearer(fresh))
    assert removed.status == 200, await removed.text()
    events = [(r.getMessage(), r.audit) for r in caplog.records if r.name == "gateway.audit"]
    factor = [(name, fields.get("method"), fields.get("reason")) for name, fields in events if name.startswith("second_factor.")]
    assert factor == [
        ("second_factor.enrolled", "totp", None),
        ("second_factor.failed", "totp", "wrong_code"),
        ("second_factor.verified", "totp", None),
        ("second_factor.recovery_used", None, None),
        ("second_factor.verified", "recovery", None),
        ("second_factor.removed", "totp", None),
    ]
    assert all(fields["subject"] == "alice" for name, fields in events if name.startswith("second_factor."))
    text = repr(events)
    for secret in (otp.secret, otp.now(), otp.at(time.time() - 30), first["mfa_token"], second["mfa_token"], *recovery_codes):
        assert secret not in text
