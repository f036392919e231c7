"""One look at an experiment: from both arms' data in the same window to an action, as a pure function.

The rollout controller and the simulator both call :func:`decide`; what the simulator measures (false
promotions, power, false rollbacks) is therefore the behaviour of the controller, not of a copy.

The order of the questions is the order of their authority:

1. **Is the split what was asked for?** A sample-ratio mismatch means the arms are not comparable at all; the
   experiment halts for a person, whatever the metrics say.
2. **Has a guardrail been breached?** Any metric significantly worse *and* by more than its allowed change rolls
   back at once — at any look, because a bad candidate should be stopped before most users see it.
3. **Is every guardrail shown to be inside its allowance?** Only then does the step pass: a candidate advances on
   evidence that it is no worse than allowed, never because nothing was detected.
4. Otherwise keep collecting; at the maximum duration, pause as *inconclusive* rather than guess.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from modelyard.rollouts.stats import (
    Comparison,
    Direction,
    SampleRatio,
    Summary,
    compare_latency,
    compare_means,
    sample_ratio,
)


class MetricKind(StrEnum):
    LATENCY = "latency"  # rank-tested, relative effect
    RATE = "rate"  # a proportion: anytime-valid, absolute effect
    MEAN = "mean"  # a bounded score: anytime-valid, absolute effect


@dataclass(frozen=True)
class MetricInfo:
    kind: MetricKind
    direction: Direction
    description: str


METRICS: Mapping[str, MetricInfo] = {
    "latency": MetricInfo(MetricKind.LATENCY, Direction.LOWER_IS_BETTER, "end-to-end latency of a request, seconds"),
    "ttft": MetricInfo(MetricKind.LATENCY, Direction.LOWER_IS_BETTER, "time to the first token, seconds"),
    "tpot": MetricInfo(MetricKind.LATENCY, Direction.LOWER_IS_BETTER, "time per output token, seconds"),
    "error_rate": MetricInfo(MetricKind.RATE, Direction.LOWER_IS_BETTER, "share of requests that failed"),
    "feedback": MetricInfo(MetricKind.MEAN, Direction.HIGHER_IS_BETTER, "mean user feedback score, scaled to 0..1"),
    "eval_score": MetricInfo(
        MetricKind.RATE, Direction.HIGHER_IS_BETTER, "pass rate of the live eval suite on sampled requests"
    ),
    "output_tokens": MetricInfo(MetricKind.MEAN, Direction.HIGHER_IS_BETTER, "mean completion tokens per request"),
    "empty_rate": MetricInfo(MetricKind.RATE, Direction.LOWER_IS_BETTER, "share of empty or refusal answers"),
}


@dataclass(frozen=True)
class Guardrail:
    """A metric and how much worse than control it may get: relative for latency (0.1 = 10 % slower), absolute
    for rates and scores (0.02 = two points)."""

    metric: str
    allowed_change: float = 0.0

    @property
    def info(self) -> MetricInfo:
        return METRICS[self.metric]


@dataclass(frozen=True)
class ArmData:
    """What one arm produced in the window: its request count, raw values of the latency metrics, summaries of
    the rates and means."""

    requests: int
    samples: Mapping[str, Sequence[float]] = field(default_factory=dict)
    summaries: Mapping[str, Summary] = field(default_factory=dict)

    def size(self, metric: str) -> int:
        if METRICS[metric].kind is MetricKind.LATENCY:
            return len(self.samples.get(metric, ()))
        summary = self.summaries.get(metric)
        return summary.n if summary is not None else 0


@dataclass(frozen=True)
class Plan:
    """The statistical plan of an experiment: alpha, how many looks it may take (the rank test splits alpha over them),
    the minimum sample per arm before a metric is judged, the sample the sequential test is tuned for."""

    alpha: float = 0.05
    looks: int = 20
    min_sample: int = 100
    tuning_n: int = 2000
    srm_threshold: float = 0.001


class Action(StrEnum):
    WAIT = "wait"  # keep collecting at this step
    ADVANCE = "advance"  # every guardrail shown inside its allowance
    ROLLBACK = "rollback"  # a guardrail breached
    PAUSE = "pause"  # inconclusive at the maximum duration: a person decides
    HALT = "halt"  # the split is broken: a person decides


@dataclass(frozen=True)
class Decision:
    action: Action
    reason: str
    comparisons: tuple[Comparison, ...]
    sample_ratio: SampleRatio | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "action": self.action.value,
            "reason": self.reason,
            "comparisons": [c.as_dict() for c in self.comparisons],
            "sample_ratio": self.sample_ratio.as_dict() if self.sample_ratio is not None else None,
        }


def compare(guardrail: Guardrail, control: ArmData, treatment: ArmData, plan: Plan, final: bool) -> Comparison:
    info = guardrail.info
    if info.kind is MetricKind.LATENCY:
        return compare_latency(
            guardrail.metric,
            control.samples[guardrail.metric],
            treatment.samples[guardrail.metric],
            alpha=plan.alpha,
            looks=plan.looks,
            allowed_change=guardrail.allowed_change,
            direction=info.direction,
            final=final,
        )
    return compare_means(
        guardrail.metric,
        control.summaries[guardrail.metric],
        treatment.summaries[guardrail.metric],
        alpha=plan.alpha,
        tuning_n=plan.tuning_n,
        allowed_change=guardrail.allowed_change,
        direction=info.direction,
        final=final,
    )


def decide(
    guardrails: Sequence[Guardrail],
    control: ArmData,
    treatment: ArmData,
    treatment_share: float,
    plan: Plan,
    final: bool,
) -> Decision:
    """The action for this look. ``treatment_share`` is the fraction of traffic the treatment should get;
    ``final`` is true at the step's maximum duration."""
    srm: SampleRatio | None = None
    if 0.0 < treatment_share < 1.0 and control.requests + treatment.requests > 0:
        srm = sample_ratio(
            [control.requests, treatment.requests], [1.0 - treatment_share, treatment_share], plan.srm_threshold
        )
        if srm.mismatch:
            return Decision(
                Action.HALT,
                f"sample ratio mismatch: {control.requests} control / {treatment.requests} treatment requests "
                f"for a {1 - treatment_share:.0%}/{treatment_share:.0%} split (p = {srm.p_value:.2g})",
                (),
                srm,
            )
    results: list[Comparison] = []
    waiting: list[str] = []
    for guardrail in guardrails:
        if min(control.size(guardrail.metric), treatment.size(guardrail.metric)) < max(plan.min_sample, 2):
            waiting.append(guardrail.metric)
            continue
        results.append(compare(guardrail, control, treatment, plan, final))
    breached = [c for c in results if c.breach]
    if breached:
        return Decision(Action.ROLLBACK, "; ".join(_breach_text(c) for c in breached), tuple(results), srm)
    if not waiting and all(c.within_allowance for c in results):
        return Decision(Action.ADVANCE, "every guardrail is inside its allowed change", tuple(results), srm)
    open_metrics = waiting + [c.metric for c in results if not c.within_allowance]
    if final:
        return Decision(
            Action.PAUSE,
            "inconclusive at the maximum duration: " + ", ".join(open_metrics) + " not shown inside the allowance",
            tuple(results),
            srm,
        )
    return Decision(Action.WAIT, "collecting: " + ", ".join(open_metrics), tuple(results), srm)


def _breach_text(c: Comparison) -> str:
    if c.test == "mann-whitney":
        return (
            f"{c.metric} worse by {c.effect:+.1%} (interval {c.lower:+.1%} .. {c.upper:+.1%}, allowed "
            f"{c.allowed_change:+.1%}, p = {c.p_value:.2g}, n = {c.control_n}/{c.treatment_n})"
        )
    return (
        f"{c.metric} {c.control_value:.4g} → {c.treatment_value:.4g} (change {c.effect:+.4g}, interval "
        f"{c.lower:+.4g} .. {c.upper:+.4g}, allowed {c.allowed_change:+.4g}, e = {c.e_value:.3g}, "
        f"n = {c.control_n}/{c.treatment_n})"
    )
