"""Rollout splits laid over the deployments spec (pure): a declared route keeps its targets scaled, a registry id
becomes a two-target route pinned to both versions, and the result is a spec the validator accepts."""

from __future__ import annotations

import pytest

from modelyard.deploy.rollout_split import CANDIDATE, CONTROL, TrafficSplit, with_splits
from modelyard.routing.config import parse_deployments

FILE = """
routes:
  chat:
    targets:
      stable: {model: tiny@production, weight: 90}
      spare: {model: tiny:1, weight: 10}
    fallbacks: [stable]
"""


def test_a_declared_route_keeps_its_targets_and_policies() -> None:
    spec = parse_deployments(FILE, "test")
    out = with_splits(spec, [TrafficSplit("chat", "tiny", 1, 3, 25.0)])
    route = out.routes["chat"]
    weights = {name: target.weight for name, target in route.targets.items()}
    assert weights == {"stable": pytest.approx(67.5), "spare": pytest.approx(7.5), CANDIDATE: pytest.approx(25.0)}
    assert route.targets[CANDIDATE].model == "tiny:3" and route.fallbacks == ["stable"]
    assert spec.routes["chat"].targets["stable"].weight == 90  # the file's spec is not changed


def test_a_registry_id_becomes_a_route_pinned_to_both_versions() -> None:
    out = with_splits(parse_deployments(FILE, "test"), [TrafficSplit("tiny", "tiny", 1, 2, 5.0, "header:x-user")])
    route = out.routes["tiny"]
    assert {name: (t.model, t.weight) for name, t in route.targets.items()} == {
        CONTROL: ("tiny:1", 95.0),
        CANDIDATE: ("tiny:2", 5.0),
    }
    assert route.sticky is not None and route.sticky.key == "header:x-user"
    assert set(out.routes) == {"chat", "tiny"}
    assert with_splits(out, []) is out
