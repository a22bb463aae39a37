"""GCRA (the generic cell rate algorithm), as the memory store runs it; the Redis store runs the same in Lua.

State is one number per key, the theoretical arrival time ``tat``: a request at
``now`` passes when ``max(tat, now) + interval - now <= capacity * interval``,
and then moves ``tat`` on by ``interval``. That is a token bucket of
``capacity`` refilled at one per ``interval``, without a timer or a counter.
"""
from __future__ import annotations

import math

from gateway.stores.base import RateDecision

__all__ = ["gcra"]


def gcra(tat: float, now: float, interval: float, capacity: int) -> tuple[float, RateDecision]:
    """The new ``tat`` and the decision for one request at ``now``."""
    new_tat = max(tat, now) + interval
    tolerance = capacity * interval
    ahead = new_tat - now
    if ahead > tolerance + 1e-9:
        behind = max(tat, now) - now
        return tat, RateDecision(False, 0, ahead - tolerance, behind)
    remaining = int(math.floor((tolerance - ahead) / interval + 1e-9))
    return new_tat, RateDecision(True, remaining, 0.0, ahead)
