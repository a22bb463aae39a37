"""UpstreamSlots: no address and no anonymous crowd takes all of an origin's slots (no sockets)."""
from __future__ import annotations

import contextlib

import pytest

from gateway.errors import GatewayError
from gateway.upstream.slots import UpstreamSlots

ORIGIN = "http://app.internal:8000/api"


async def test_anonymous_requests_leave_the_reserve_and_one_address_its_share():
    slots = UpstreamSlots(8, 0.2, client_share=0.25, reserved=0.25)
    async with contextlib.AsyncExitStack() as held:
        for i in range(6):  # six addresses, anonymous: 6 of 8
            await held.enter_async_context(slots.hold(ORIGIN, f"10.0.0.{i}", anonymous=True))
        with pytest.raises(GatewayError) as refused:
            await held.enter_async_context(slots.hold(ORIGIN, "10.0.0.99", anonymous=True))
        assert (refused.value.status, refused.value.code) == (503, "upstream_busy")
        assert not slots.saturated  # the pool is not full: readiness stays up
        await held.enter_async_context(slots.hold(ORIGIN, "10.0.0.0", anonymous=False))  # a token: 2nd of its share
        with pytest.raises(GatewayError):  # a third for that address is past its share (2 of 8)
            await held.enter_async_context(slots.hold(ORIGIN, "10.0.0.0", anonymous=False))
        await held.enter_async_context(slots.hold(ORIGIN, "10.0.0.50", anonymous=False))  # 8 of 8
    async with slots.hold(ORIGIN, "10.0.0.99", anonymous=True):  # all given back
        pass


def test_defaults_protect_a_production_origin():
    from gateway.config.limits import Limits

    limits = Limits()
    assert limits.upstream_client_share < 1 and limits.upstream_reserved > 0 and limits.body_min_rate > 0
