"""Which replica of a target takes the next attempt.

- ``least_outstanding`` (default): fewest requests in flight; ties rotate so equal replicas share the load.
- ``round_robin``: in turn.
- ``latency_ewma``: lowest smoothed latency weighted by the requests already in flight (a replica that is fast
  but busy is not buried under every request).
- ``session_affinity``: the same conversation (or user, or header value) always reaches the same replica while it
  is usable, so the engine's prompt cache is reused; without a key it behaves like ``least_outstanding``.
- ``prefix_cache``: the replica that was sent the longest prefix of this prompt (so probably still caches it),
  within a bounded load; else ``least_outstanding`` (``prefix.py``).

Only usable replicas are candidates (ready, not ejected, not already tried by this request).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from modelyard.routing.prefix import pick_by_prefix
from modelyard.routing.weights import rendezvous_choice

EWMA_ALPHA = 0.3  # weight of the newest sample in the latency average
UNMEASURED_LATENCY_S = 0.0  # replicas with no sample yet are tried first, so they get one


@dataclass(frozen=True)
class ReplicaView:
    name: str
    usable: bool
    outstanding: int
    latency_ewma_s: float | None


def pick_replica(
    policy: str,
    replicas: Sequence[ReplicaView],
    turn: int,
    affinity_key: str | None = None,
    depths: Sequence[int] | None = None,
) -> int | None:
    """Index of the chosen replica, or None when none is usable. ``turn`` is a per-target counter; ``depths``
    (for ``prefix_cache``): per replica, how many leading blocks of the prompt it was sent before."""
    candidates = [i for i, r in enumerate(replicas) if r.usable]
    if not candidates:
        return None
    if len(candidates) == 1:
        return candidates[0]
    if policy == "prefix_cache" and depths is not None:
        return pick_by_prefix(candidates, [r.outstanding for r in replicas], depths, turn)[0]
    if policy == "round_robin":
        return candidates[turn % len(candidates)]
    if policy == "session_affinity" and affinity_key:
        names = [replicas[i].name for i in candidates]
        chosen = rendezvous_choice(affinity_key, names, [1.0] * len(names))
        return candidates[chosen or 0]
    if policy == "latency_ewma":
        return min(candidates, key=lambda i: _ewma_cost(replicas[i], turn, i, len(replicas)))
    # least_outstanding: rotate the starting point so ties do not always favour the first replica
    start = turn % len(candidates)
    rotated = candidates[start:] + candidates[:start]
    return min(rotated, key=lambda i: replicas[i].outstanding)


def _ewma_cost(replica: ReplicaView, turn: int, index: int, count: int) -> tuple[float, int]:
    latency = replica.latency_ewma_s if replica.latency_ewma_s is not None else UNMEASURED_LATENCY_S
    return (latency * (replica.outstanding + 1), (index - turn) % count)


def updated_ewma(previous: float | None, sample_s: float, alpha: float = EWMA_ALPHA) -> float:
    return sample_s if previous is None else alpha * sample_s + (1 - alpha) * previous
