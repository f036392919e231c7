"""Which target of a route takes a request, and in which order targets are tried when attempts fail.

Pure functions over plain views of the targets, so every rule (weights, stickiness, regions, availability,
fallback order) is unit-tested without a gateway.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from modelyard.routing.weights import rendezvous_choice, weighted_choice


@dataclass(frozen=True)
class TargetView:
    name: str
    weight: float
    available: bool  # has a replica that is ready and not ejected
    region: str | None = None


def in_region(targets: Sequence[TargetView], region: str | None) -> list[bool]:
    """Targets a request may use: with no requested region all of them; else those tagged with that region and
    those with no region tag (served from everywhere)."""
    return [region is None or t.region is None or t.region == region for t in targets]


def choose_target(
    route: str, targets: Sequence[TargetView], allowed: Sequence[bool], sticky_key: str | None, u: float
) -> int | None:
    """The primary target: by stable hash of the sticky key when there is one, else at random by weight.

    A sticky key keeps its target while that target is available; only if it is not does the key move (to where
    it would go among the available ones), so an outage does not reshuffle every other key.
    """
    weights = [t.weight if ok else 0.0 for t, ok in zip(targets, allowed, strict=True)]
    live = [w if t.available else 0.0 for w, t in zip(weights, targets, strict=True)]
    names = [t.name for t in targets]
    if sticky_key is not None:
        index = rendezvous_choice(sticky_key, names, weights, salt=route)
        if index is not None and targets[index].available:
            return index
        return rendezvous_choice(sticky_key, names, live, salt=route) if any(live) else index
    index = weighted_choice(live, u)
    return index if index is not None else weighted_choice(weights, u)


def attempt_targets(primary: int, fallbacks: Sequence[int], allowed: Sequence[bool]) -> list[int]:
    """The primary first, then the fallback chain in order (each target once, regions respected)."""
    order = [primary]
    order.extend(f for f in fallbacks if f != primary and allowed[f] and f not in order)
    return order


def split_alternates(order: Sequence[int], targets: Sequence[TargetView], allowed: Sequence[bool]) -> tuple[int, ...]:
    """The split's other targets (weighted, allowed, not already in the attempt order), heaviest first: where a
    request goes when every replica of its own chain is down, as a request arriving then would."""
    pairs = enumerate(zip(targets, allowed, strict=True))
    others = [i for i, (t, ok) in pairs if ok and t.weight > 0 and i not in order]
    return tuple(sorted(others, key=lambda i: -targets[i].weight))
