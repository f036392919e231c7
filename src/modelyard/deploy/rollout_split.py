"""A rollout's traffic split laid over the deployments file: pure, so every gateway derives the same routes.

A rollout moves a share of a route's traffic to a candidate version. Every gateway reads the active rollouts from
the database and lays their splits over its deployments file before the routes are built, so the split needs no
file edit (the file stays the operator's) and is the same on every replica:

* a route the file declares keeps its targets, their weights scaled to ``100 - share`` percent, and gains a
  target :data:`CANDIDATE` with ``share`` percent;
* a registry id the file does not declare (``name``, ``name@alias``) becomes a declared route of two targets,
  :data:`CONTROL` pinned to the control version and :data:`CANDIDATE`, weighted ``100 - share`` and ``share``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import msgspec

from modelyard.routing.config import DeploymentsSpec, RouteSpec, StickySpec, TargetSpec

CONTROL = "rollout-control"
CANDIDATE = "rollout-candidate"


@dataclass(frozen=True)
class TrafficSplit:
    route: str
    model: str
    control_version: int
    candidate_version: int
    share: float  # the candidate's percentage, 0 < share < 100
    sticky: str | None = None  # a stickiness key (``user`` or ``header:NAME``) for a route the file does not declare
    others: tuple[tuple[int, float], ...] = ()  # an experiment's further treatments: (version, percentage)


def with_splits(spec: DeploymentsSpec, splits: Sequence[TrafficSplit]) -> DeploymentsSpec:
    """The deployments spec with each split laid over its route."""
    if not splits:
        return spec
    routes = dict(spec.routes)
    for split in splits:
        added = {CANDIDATE: (split.candidate_version, split.share)}
        added.update({f"{CANDIDATE}-{version}": (version, share) for version, share in split.others})
        treated = sum(share for _, share in added.values())
        declared = routes.get(split.route)
        if declared is None:
            control = TargetSpec(model=f"{split.model}:{split.control_version}", weight=100.0 - treated)
            targets = {CONTROL: control}
            targets.update({n: TargetSpec(model=f"{split.model}:{v}", weight=w) for n, (v, w) in added.items()})
            sticky = StickySpec(key=split.sticky) if split.sticky else None
            routes[split.route] = RouteSpec(targets=targets, sticky=sticky)
            continue
        total = sum(t.weight for t in declared.targets.values()) or 1.0
        scale = (100.0 - treated) / 100.0
        targets = {name: msgspec.structs.replace(t, weight=t.weight * scale) for name, t in declared.targets.items()}
        for name, (version, share) in added.items():
            targets[name] = TargetSpec(model=f"{split.model}:{version}", weight=total * share / 100.0)
        routes[split.route] = msgspec.structs.replace(declared, targets=targets)
    return DeploymentsSpec(routes=routes)
