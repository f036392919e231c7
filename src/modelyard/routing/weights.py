"""Choosing a target by weight: independently per request, or stickily per key.

Sticky choice is weighted rendezvous hashing: every (key, target) pair gets a stable pseudo-random number from a
keyed hash (not Python's ``hash``, which changes per process), turned into an exponential "arrival time" scaled
by the target's weight; the earliest target wins. The same key therefore lands on the same target in every
gateway process and after restarts, each target receives keys in proportion to its weight, and when one weight
changes only keys moving to or from that target change places — the fewest possible.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence

_SCALE = float(1 << 64)


def stable_unit(*parts: str) -> float:
    """A number in (0, 1) that depends only on ``parts``: the same in every process and on every machine."""
    digest = hashlib.blake2b("\x1f".join(parts).encode(), digest_size=8).digest()
    return (int.from_bytes(digest, "big") + 0.5) / _SCALE


def weighted_choice(weights: Sequence[float], u: float) -> int | None:
    """Index picked with probability proportional to its weight, for ``u`` uniform in [0, 1); None if all are 0."""
    total = sum(weights)
    if total <= 0:
        return None
    point = u * total
    running = 0.0
    last = None
    for index, weight in enumerate(weights):
        if weight <= 0:
            continue
        running += weight
        last = index
        if point < running:
            return index
    return last  # floating-point rounding at the very top of the range


def rendezvous_choice(key: str, names: Sequence[str], weights: Sequence[float], salt: str = "") -> int | None:
    """The target this key sticks to: min over targets of -ln(h(key, target)) / weight."""
    best, best_score = None, math.inf
    for index, (name, weight) in enumerate(zip(names, weights, strict=True)):
        if weight <= 0:
            continue
        score = -math.log(stable_unit(salt, key, name)) / weight
        if score < best_score:
            best, best_score = index, score
    return best
