"""UpstreamSlots: no address and no anonymous crowd takes all of an origin's slots (no sockets)."""
from __future__ import annotations

import asyncio
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


async def test_a_waiting_request_gets_the_slot_given_back_and_nothing_is_left_held():
    """A free slot is taken without waiting; a request in front of a full pool waits for the one given back; once
    all are given back, no client is counted any more (the per-client counts are a plain dict, emptied)."""
    slots = UpstreamSlots(1, 5.0)
    order = []
    first = slots.hold(ORIGIN, "10.0.0.1")
    await first.__aenter__()

    async def second() -> None:
        async with slots.hold(ORIGIN, "10.0.0.2"):
            order.append("second")

    waiting = asyncio.create_task(second())
    await asyncio.sleep(0.05)
    assert order == [] and slots.waiting[slots.origin(ORIGIN)] == 1
    order.append("first done")
    await first.__aexit__(None, None, None)
    await asyncio.wait_for(waiting, 5)
    assert order == ["first done", "second"]
    (origin_slots,) = slots._slots.values()
    assert origin_slots.in_use == 0 and origin_slots.per_client == {}
