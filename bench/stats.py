"""Small statistics for few noisy samples: medians, ranges and paired ratios.

With 3 rounds on a shared 2-core machine, a mean would be dragged around by
one unlucky run; the median and the min-max range say more.  Ratios are
computed per round (gateway and reference measured minutes apart at most) and
then the median is taken, so drifts of the machine cancel out.
"""
from __future__ import annotations

import statistics
from typing import Any, Iterable, Sequence

__all__ = ["summary", "paired_ratio", "paired_delta"]


def summary(values: Iterable[float]) -> dict[str, float]:
    """median, min, max and spread (max-min as % of the median)."""
    vals = sorted(values)
    if not vals:
        return {"median": float("nan"), "min": float("nan"), "max": float("nan"), "spread_pct": float("nan"), "n": 0}
    med = statistics.median(vals)
    spread = (vals[-1] - vals[0]) / med * 100 if med else float("nan")
    return {"median": med, "min": vals[0], "max": vals[-1], "spread_pct": spread, "n": len(vals)}


def _paired(a: Sequence[dict[str, Any]], b: Sequence[dict[str, Any]], key: str) -> list[tuple[float, float]]:
    by_round = {r["round"]: r[key] for r in b}
    return [(r[key], by_round[r["round"]]) for r in a if r["round"] in by_round]


def paired_ratio(a: Sequence[dict[str, Any]], b: Sequence[dict[str, Any]], key: str = "rps") -> dict[str, float]:
    """Summary of a[key]/b[key] over rounds measured in both."""
    return summary(x / y for x, y in _paired(a, b, key) if y)


def paired_delta(a: Sequence[dict[str, Any]], b: Sequence[dict[str, Any]], key: str) -> dict[str, float]:
    """Summary of a[key]-b[key] over rounds measured in both (e.g. added latency)."""
    return summary(x - y for x, y in _paired(a, b, key))
