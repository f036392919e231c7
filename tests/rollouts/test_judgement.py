"""The one-look decision: halt on a broken split, roll back on a breach naming the metric, advance only on
evidence, wait below the minimum sample, pause as inconclusive at the maximum duration."""

from __future__ import annotations

import random

import pytest

from modelyard.rollouts.judgement import Action, ArmData, Guardrail, Plan, decide
from modelyard.rollouts.stats import Summary

PLAN = Plan(alpha=0.05, looks=4, min_sample=50, tuning_n=1000)


def _arm(rng: random.Random, n: int, scale: float, error_rate: float, score: float = 0.8) -> ArmData:
    errors = sum(rng.random() < error_rate for _ in range(n))
    scores = [1.0 if rng.random() < score else 0.0 for _ in range(n)]
    return ArmData(
        requests=n,
        samples={"latency": [rng.lognormvariate(0.0, 0.3) * scale for _ in range(n)]},
        summaries={"error_rate": Summary.of_rate(errors, n), "eval_score": Summary.of(scores)},
    )


def test_a_slower_candidate_is_rolled_back_naming_the_metric_and_its_numbers() -> None:
    rng = random.Random(1)
    decision = decide(
        [Guardrail("latency", 0.05), Guardrail("error_rate", 0.02)],
        _arm(rng, 1000, 1.0, 0.01),
        _arm(rng, 1000, 1.5, 0.01),
        0.5,
        PLAN,
        final=False,
    )
    assert decision.action is Action.ROLLBACK
    assert decision.reason.startswith("latency worse by +")
    assert "n = 1000/1000" in decision.reason
    body = decision.as_dict()
    assert body["comparisons"][0]["metric"] == "latency" and body["comparisons"][0]["breach"] is True
    assert body["sample_ratio"]["mismatch"] is False


def test_a_lower_eval_score_is_a_breach_too() -> None:
    rng = random.Random(2)
    decision = decide(
        [Guardrail("eval_score", 0.05)], _arm(rng, 800, 1.0, 0.0, 0.9), _arm(rng, 800, 1.0, 0.0, 0.5), 0.5, PLAN, False
    )
    assert decision.action is Action.ROLLBACK and decision.reason.startswith("eval_score 0.9")


def test_an_identical_candidate_advances_on_evidence() -> None:
    rng = random.Random(3)
    decision = decide(
        [Guardrail("latency", 0.2)], _arm(rng, 1500, 1.0, 0.0), _arm(rng, 1500, 1.0, 0.0), 0.5, PLAN, False
    )
    assert decision.action is Action.ADVANCE
    assert decision.comparisons[0].within_allowance


def test_below_the_minimum_sample_it_waits_and_at_the_end_it_pauses() -> None:
    rng = random.Random(4)
    small = decide([Guardrail("latency", 0.05)], _arm(rng, 30, 1.0, 0.0), _arm(rng, 30, 1.0, 0.0), 0.5, PLAN, False)
    assert small.action is Action.WAIT and small.comparisons == () and "latency" in small.reason
    end = decide([Guardrail("latency", 0.001)], _arm(rng, 200, 1.0, 0.0), _arm(rng, 200, 1.0, 0.0), 0.5, PLAN, True)
    assert end.action is Action.PAUSE and end.reason.startswith("inconclusive at the maximum duration")


@pytest.mark.parametrize(("control", "treatment", "halted"), [(2250, 2750, True), (2490, 2510, False)])
def test_a_broken_split_halts_whatever_the_metrics_say(control: int, treatment: int, halted: bool) -> None:
    rng = random.Random(5)
    decision = decide(
        [Guardrail("latency", 0.5)], _arm(rng, control, 1.0, 0.0), _arm(rng, treatment, 1.0, 0.0), 0.5, PLAN, False
    )
    assert (decision.action is Action.HALT) is halted
    if halted:
        assert decision.reason.startswith("sample ratio mismatch: 2250 control / 2750 treatment")
