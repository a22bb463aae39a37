"""TOTP codes in tests without step-boundary flakes: a code computed just before a 30 s boundary may reach the
gateway in the next step, where the previous step's code is out of its window."""
from __future__ import annotations

import asyncio
import time

STEP = 30.0


async def clear_of_step_boundary(margin: float = 3.0) -> None:
    """Wait, if needed, until at least ``margin`` seconds remain in the current TOTP step."""
    left = STEP - time.time() % STEP
    if left < margin:
        await asyncio.sleep(left + 0.05)
