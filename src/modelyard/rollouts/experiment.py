"""Experiments: a route split between a control and one or more treatments, judged continuously, decided by people.

An experiment is the A/B form of a rollout: the allocation is fixed for its whole duration, nothing is promoted
by itself, and ``experiments show`` reports, for each treatment against the control in the same window, the
primary metric and every guardrail with its effect, interval, p- or e-value, samples and verdict, plus the
sample-ratio check over all arms.

    name: shorter-answers
    route: gemma-3-270m
    control: gemma-3-270m:1
    treatments: [gemma-3-270m:2]
    allocation: [50, 50]              # control first; percentages summing to 100 (default: equal)
    sticky: header:x-user-id          # optional: user | header:NAME
    primary: feedback
    guardrails: {latency: 0.2, error_rate: 0.01}
    min_sample: 200
    max_duration_s: 604800
    alpha: 0.05
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from modelyard.registry.errors import InvalidRequest
from modelyard.registry.references import parse_ref
from modelyard.rollouts.judgement import METRICS, ArmData, Guardrail, Plan, compare
from modelyard.rollouts.plan import PlanError, _guardrails, _number
from modelyard.rollouts.stats import Comparison, SampleRatio, sample_ratio

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_KEYS = {
    "name", "route", "control", "treatments", "allocation", "sticky", "primary", "guardrails", "min_sample",
    "max_duration_s", "alpha",
}  # fmt: skip


@dataclass(frozen=True)
class Arm:
    model: str
    version: int

    def __str__(self) -> str:
        return f"{self.model}:{self.version}"


@dataclass(frozen=True)
class ExperimentSpec:
    name: str
    route: str
    control: Arm
    treatments: tuple[Arm, ...]
    allocation: tuple[float, ...]  # control first
    primary: str
    guardrails: dict[str, float] = field(default_factory=dict)
    sticky: str | None = None
    min_sample: int = 200
    max_duration_s: float = 7 * 24 * 3600.0
    alpha: float = 0.05

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["control"] = str(self.control)
        data["treatments"] = [str(t) for t in self.treatments]
        data["allocation"] = list(self.allocation)
        return data


def _arm(value: Any, key: str) -> Arm:
    if not isinstance(value, str):
        raise PlanError(key, "must be MODEL:VERSION")
    try:
        ref = parse_ref(value)
    except InvalidRequest as exc:
        raise PlanError(key, exc.message) from None
    if ref.version is None:
        raise PlanError(key, f"must name a version (MODEL:VERSION), not '{value}'")
    return Arm(ref.name, ref.version)


def parse_experiment(raw: Any) -> ExperimentSpec:
    """Validate an experiment document (YAML or JSON, parsed); errors name the key."""
    if not isinstance(raw, dict):
        raise PlanError("experiment", "must be a mapping of keys")
    unknown = sorted(set(raw) - _KEYS)
    if unknown:
        raise PlanError(unknown[0], f"unknown key (known: {', '.join(sorted(_KEYS))})")
    name = raw.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise PlanError("name", "required: letters, digits, '.', '_' or '-' (at most 128)")
    route = raw.get("route")
    if not isinstance(route, str) or not route:
        raise PlanError("route", "required: the route (model id clients send) to split")
    control = _arm(raw.get("control"), "control")
    treatments_raw = raw.get("treatments")
    if not isinstance(treatments_raw, list) or not treatments_raw:
        raise PlanError("treatments", "required: a list of MODEL:VERSION")
    treatments = tuple(_arm(t, f"treatments[{i}]") for i, t in enumerate(treatments_raw))
    arms = [control, *treatments]
    for index, arm in enumerate(treatments):
        if arm.model != control.model:
            raise PlanError(f"treatments[{index}]", f"must be a version of the control's model '{control.model}'")
        if arm in arms[: index + 1]:
            raise PlanError(f"treatments[{index}]", f"{arm} is already an arm")
    allocation = _allocation(raw.get("allocation"), len(arms))
    primary = raw.get("primary")
    if not isinstance(primary, str) or primary not in METRICS:
        raise PlanError("primary", f"required: one of {', '.join(METRICS)}")
    guardrails = _guardrails(raw["guardrails"]) if "guardrails" in raw else {}
    sticky = raw.get("sticky")
    if sticky is not None and (not isinstance(sticky, str) or not (sticky == "user" or sticky.startswith("header:"))):
        raise PlanError("sticky", "must be 'user' or 'header:NAME'")
    return ExperimentSpec(
        name=name,
        route=route,
        control=control,
        treatments=treatments,
        allocation=allocation,
        primary=primary,
        guardrails=guardrails,
        sticky=sticky,
        min_sample=int(_number(raw, "min_sample", 200, low=2, integer=True)),
        max_duration_s=_number(raw, "max_duration_s", 7 * 24 * 3600.0, low=60.0),
        alpha=_number(raw, "alpha", 0.05, low=0.0, high=0.5, open_low=True),
    )


def _allocation(value: Any, arms: int) -> tuple[float, ...]:
    if value is None:
        return tuple(100.0 / arms for _ in range(arms))
    if not isinstance(value, list) or len(value) != arms:
        raise PlanError("allocation", f"must list {arms} percentages (control first)")
    for index, share in enumerate(value):
        if isinstance(share, bool) or not isinstance(share, int | float) or not 0 < share < 100:
            raise PlanError(f"allocation[{index}]", "must be a percentage between 0 and 100")
    if abs(sum(value) - 100.0) > 1e-6:
        raise PlanError("allocation", f"must sum to 100, not {sum(value):g}")
    return tuple(float(share) for share in value)


@dataclass(frozen=True)
class ArmReport:
    treatment: str
    primary: Comparison | None
    guardrails: tuple[Comparison, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "treatment": self.treatment,
            "primary": self.primary.as_dict() if self.primary is not None else None,
            "guardrails": [c.as_dict() for c in self.guardrails],
        }


def report(
    spec: ExperimentSpec, control: ArmData, treatments: list[ArmData], started: datetime, now: datetime
) -> tuple[list[ArmReport], SampleRatio]:
    """Each treatment against the control in the same window, and the split over all arms (pure)."""
    final = (now - started).total_seconds() >= spec.max_duration_s
    looks = 20  # people look when they like: the sequential tests allow any; rank tests split alpha over 20 looks
    plan = Plan(alpha=spec.alpha, looks=looks, min_sample=spec.min_sample, tuning_n=4 * spec.min_sample)
    reports = []
    for arm, data in zip(spec.treatments, treatments, strict=True):

        def judged(metric: str, allowed: float, data: ArmData = data) -> Comparison | None:
            if min(control.size(metric), data.size(metric)) < max(spec.min_sample, 2):
                return None
            return compare(Guardrail(metric, allowed), control, data, plan, final)

        primary = judged(spec.primary, 0.0)
        guards = tuple(c for c in (judged(m, a) for m, a in spec.guardrails.items()) if c is not None)
        reports.append(ArmReport(str(arm), primary, guards))
    srm = sample_ratio([control.requests, *(t.requests for t in treatments)], list(spec.allocation))
    return reports, srm
