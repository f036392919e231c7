"""Statistics for comparing two eval runs: pure functions, no I/O.

Two runs of the same suite are *paired* (the same cases), so the right test for "did the pass rate change" is
McNemar's: only cases whose outcome flipped carry information. With the few dozen cases a task suite has, the
chi-square approximation is poor, so the exact binomial form is used: under no difference each discordant pair
is a fair coin.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class McNemar:
    only_a: int  # passed in A, failed in B (regressions when B is the candidate)
    only_b: int  # failed in A, passed in B (improvements)
    p_value: float

    @property
    def discordant(self) -> int:
        return self.only_a + self.only_b

    def significant(self, alpha: float = 0.05) -> bool:
        return self.discordant > 0 and self.p_value < alpha

    def worse(self, alpha: float = 0.05) -> bool:
        """B is significantly worse than A."""
        return self.significant(alpha) and self.only_a > self.only_b


def mcnemar_exact(only_a: int, only_b: int) -> McNemar:
    """Two-sided exact McNemar test: p = min(1, 2·P(X ≤ min(b, c))) with X ~ Binomial(b + c, 1/2)."""
    if only_a < 0 or only_b < 0:
        raise ValueError("discordant counts cannot be negative")
    n = only_a + only_b
    if n == 0:
        return McNemar(only_a, only_b, 1.0)
    k = min(only_a, only_b)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return McNemar(only_a, only_b, min(1.0, 2.0 * tail))


def paired_outcomes(a: dict[str, bool], b: dict[str, bool]) -> McNemar:
    """McNemar over the case ids both runs have."""
    common = a.keys() & b.keys()
    only_a = sum(1 for case in common if a[case] and not b[case])
    only_b = sum(1 for case in common if b[case] and not a[case])
    return mcnemar_exact(only_a, only_b)


def percentile(values: list[float], q: float) -> float | None:
    """Linear-interpolated percentile (q in [0, 100]); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None
