"""A rollout's plan: its steps, guardrails and statistical settings, validated with messages naming the key.

The same plan comes from the CLI's flags, a YAML file or the admin API's JSON; it is stored with the rollout as
JSON, so a restarted controller judges by exactly the plan the rollout started with.

    steps: [5, 25, 50, 100]          # candidate percentages; 100 (or the end of the list) promotes
    guardrails: {latency: 0.2, error_rate: 0.02, eval_score: 0.1}   # allowed change per metric
    alpha: 0.05
    min_sample: 50                   # per arm, per step, before a metric is judged
    step_max_s: 600                  # a step still undecided after this pauses as inconclusive
    look_s: 10                       # how often the controller looks
    alias: production                # what promotion moves (through the eval gates)
    sticky: header:x-user-id         # optional stickiness key
    webhook: https://hooks.example/rollouts   # optional: each decision is POSTed as JSON
    live_eval: {suite: evals/smoke.yaml, sample: 1.0}   # optional: score sampled live answers
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from modelyard.rollouts.judgement import METRICS, Guardrail, Plan

DEFAULT_STEPS = (5, 25, 50, 100)
DEFAULT_GUARDRAILS = {"latency": 0.2, "error_rate": 0.02}


class PlanError(ValueError):
    """A plan that cannot be used; ``key`` is the path of the offending key (``guardrails.latency``)."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}")
        self.key = key


@dataclass(frozen=True)
class LiveEval:
    suite: str  # path of an eval suite whose deterministic assertions score sampled answers
    sample: float = 1.0  # share of the arms' answers that are scored


@dataclass(frozen=True)
class RolloutPlan:
    steps: tuple[int, ...] = DEFAULT_STEPS
    guardrails: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_GUARDRAILS))
    alpha: float = 0.05
    min_sample: int = 50
    step_max_s: float = 600.0
    look_s: float = 10.0
    alias: str = "production"
    sticky: str | None = None
    webhook: str | None = None
    live_eval: LiveEval | None = None

    @property
    def judged_steps(self) -> tuple[int, ...]:
        """The steps at which both arms serve (a 100 % step has no control left to compare with)."""
        return tuple(step for step in self.steps if step < 100)

    def statistics(self) -> Plan:
        """The judge's plan: the rank test's alpha is split over every look the rollout may take."""
        looks = max(1, math.ceil(self.step_max_s / self.look_s)) * max(1, len(self.judged_steps))
        return Plan(alpha=self.alpha, looks=looks, min_sample=self.min_sample, tuning_n=max(40, 4 * self.min_sample))

    def guardrail_list(self) -> list[Guardrail]:
        return [Guardrail(metric, allowed) for metric, allowed in self.guardrails.items()]

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["steps"] = list(self.steps)
        return data


_KEYS = {
    "steps",
    "guardrails",
    "alpha",
    "min_sample",
    "step_max_s",
    "look_s",
    "alias",
    "sticky",
    "webhook",
    "live_eval",
}


def parse_plan(raw: dict[str, Any] | None) -> RolloutPlan:
    """Validate a plan document (JSON or YAML, already parsed); missing keys take their defaults."""
    raw = dict(raw or {})
    unknown = sorted(set(raw) - _KEYS)
    if unknown:
        raise PlanError(unknown[0], f"unknown key (known: {', '.join(sorted(_KEYS))})")
    steps = _steps(raw.get("steps", list(DEFAULT_STEPS)))
    guardrails = _guardrails(raw.get("guardrails", dict(DEFAULT_GUARDRAILS)))
    alpha = _number(raw, "alpha", 0.05, low=0.0, high=0.5, open_low=True)
    min_sample = int(_number(raw, "min_sample", 50, low=2, integer=True))
    step_max_s = _number(raw, "step_max_s", 600.0, low=1.0)
    look_s = _number(raw, "look_s", 10.0, low=0.2)
    if look_s > step_max_s:
        raise PlanError("look_s", f"must not exceed step_max_s ({step_max_s:g})")
    alias = raw.get("alias", "production")
    if not isinstance(alias, str) or not alias:
        raise PlanError("alias", "must be an alias name")
    sticky = raw.get("sticky")
    if sticky is not None and (not isinstance(sticky, str) or not (sticky == "user" or sticky.startswith("header:"))):
        raise PlanError("sticky", "must be 'user' or 'header:NAME'")
    webhook = raw.get("webhook")
    if webhook is not None and (not isinstance(webhook, str) or not webhook.startswith(("http://", "https://"))):
        raise PlanError("webhook", "must be an http(s) URL")
    return RolloutPlan(
        steps, guardrails, alpha, min_sample, step_max_s, look_s, alias, sticky, webhook, _live_eval(raw)
    )


def _steps(value: Any) -> tuple[int, ...]:
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",") if part.strip()]
    if not isinstance(value, list | tuple) or not value:
        raise PlanError("steps", "must be a list of percentages, e.g. [5, 25, 50, 100]")
    steps: list[int] = []
    for index, item in enumerate(value):
        try:
            step = int(item)
        except (TypeError, ValueError):
            raise PlanError(f"steps[{index}]", f"must be a whole percentage, not {item!r}") from None
        if not 0 < step <= 100 or (steps and step <= steps[-1]):
            raise PlanError(f"steps[{index}]", "steps must increase, each between 1 and 100")
        steps.append(step)
    if not any(step < 100 for step in steps):
        raise PlanError("steps", "needs at least one step below 100 (where the candidate is compared with control)")
    return tuple(steps)


def _guardrails(value: Any) -> dict[str, float]:
    if not isinstance(value, dict) or not value:
        raise PlanError("guardrails", f"must map metrics to their allowed change (metrics: {', '.join(METRICS)})")
    result: dict[str, float] = {}
    for metric, allowed in value.items():
        if metric not in METRICS:
            raise PlanError(f"guardrails.{metric}", f"unknown metric (known: {', '.join(METRICS)})")
        if isinstance(allowed, bool) or not isinstance(allowed, int | float) or not 0 <= allowed < 100:
            raise PlanError(f"guardrails.{metric}", "the allowed change must be a number ≥ 0 (0.1 = 10 % / 0.1 points)")
        result[metric] = float(allowed)
    return result


def _number(
    raw: dict[str, Any],
    key: str,
    default: float,
    low: float,
    high: float | None = None,
    open_low: bool = False,
    integer: bool = False,
) -> float:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or (integer and not float(value).is_integer()):
        raise PlanError(key, f"must be {'a whole number' if integer else 'a number'}, not {value!r}")
    if value < low or (open_low and value == low) or (high is not None and value > high):
        bounds = f"{'above' if open_low else 'at least'} {low:g}" + (f" and at most {high:g}" if high else "")
        raise PlanError(key, f"must be {bounds}, not {value!r}")
    return float(value)


def _live_eval(raw: dict[str, Any]) -> LiveEval | None:
    value = raw.get("live_eval")
    if value is None:
        return None
    if not isinstance(value, dict) or not isinstance(value.get("suite"), str):
        raise PlanError("live_eval.suite", "must name an eval suite file")
    unknown = sorted(set(value) - {"suite", "sample"})
    if unknown:
        raise PlanError(f"live_eval.{unknown[0]}", "unknown key (known: suite, sample)")
    sample = _number(value, "sample", 1.0, low=0.0, high=1.0, open_low=True)
    return LiveEval(value["suite"], sample)


def plan_from_json(data: dict[str, Any]) -> RolloutPlan:
    """A stored plan (written by :meth:`RolloutPlan.to_json`)."""
    return parse_plan(data)
