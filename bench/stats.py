"""Small statistics for benchmark results: percentiles, and medians with their spread over repetitions.

A single run on a shared 2-core machine says little; every headline number is the median over repetitions, shown
with the range it moved in (min-max), so a reader can tell a real difference from noise.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass


def percentile(values: Sequence[float], p: float) -> float:
    """Linear-interpolated percentile (p in 0..100); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    rank = (len(ordered) - 1) * p / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass(frozen=True)
class Spread:
    """Median of repeated measurements and the range they covered."""

    median: float
    low: float
    high: float
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        finite = [v for v in values if not math.isnan(v)]
        if not finite:
            return cls(math.nan, math.nan, math.nan, 0)
        return cls(percentile(finite, 50), min(finite), max(finite), len(finite))

    def fmt(self, digits: int = 2, unit: str = "") -> str:
        if self.n == 0:
            return "-"
        if self.n == 1:
            return f"{self.median:.{digits}f}{unit}"
        return f"{self.median:.{digits}f}{unit} ({self.low:.{digits}f}-{self.high:.{digits}f})"

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else math.nan


def rotated(items: Sequence[str], rep: int) -> list[str]:
    """Order of contenders in repetition ``rep``: rotated each time so no contender always goes first."""
    shift = rep % len(items) if items else 0
    return [*items[shift:], *items[:shift]]
