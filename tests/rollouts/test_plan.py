"""Rollout plans: defaults, the judge's settings derived from them, and errors that name the key."""

from __future__ import annotations

import pytest

from modelyard.rollouts.plan import PlanError, parse_plan


def test_defaults_and_derived_statistics() -> None:
    plan = parse_plan({})
    assert plan.steps == (5, 25, 50, 100) and plan.judged_steps == (5, 25, 50)
    assert plan.guardrails == {"latency": 0.2, "error_rate": 0.02}
    stats = plan.statistics()
    assert stats.looks == 60 * 3 and stats.alpha == 0.05 and stats.min_sample == 50
    assert parse_plan(plan.to_json()) == plan  # stored and read back unchanged
    assert parse_plan({"steps": "10, 50"}).steps == (10, 50)
    live = parse_plan({"live_eval": {"suite": "s.yaml", "sample": 0.5}})
    assert live.live_eval is not None and live.live_eval.sample == 0.5
    assert parse_plan(live.to_json()) == live


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ({"step": [5]}, "step"),
        ({"steps": []}, "steps"),
        ({"steps": [100]}, "steps"),
        ({"steps": [5, "x"]}, "steps[1]"),
        ({"steps": [50, 50]}, "steps[1]"),
        ({"steps": [0, 50]}, "steps[0]"),
        ({"guardrails": {}}, "guardrails"),
        ({"guardrails": {"speed": 0.1}}, "guardrails.speed"),
        ({"guardrails": {"latency": -1}}, "guardrails.latency"),
        ({"guardrails": {"latency": True}}, "guardrails.latency"),
        ({"alpha": 0}, "alpha"),
        ({"alpha": 0.9}, "alpha"),
        ({"min_sample": 1}, "min_sample"),
        ({"min_sample": 2.5}, "min_sample"),
        ({"step_max_s": 5, "look_s": 10}, "look_s"),
        ({"sticky": "cookie"}, "sticky"),
        ({"webhook": "ftp://x"}, "webhook"),
        ({"alias": ""}, "alias"),
        ({"live_eval": {"sample": 1}}, "live_eval.suite"),
        ({"live_eval": {"suite": "s.yaml", "rate": 1}}, "live_eval.rate"),
        ({"live_eval": {"suite": "s.yaml", "sample": 0}}, "sample"),
    ],
)
def test_errors_name_the_key(raw: dict[str, object], key: str) -> None:
    with pytest.raises(PlanError) as caught:
        parse_plan(raw)
    assert caught.value.key == key and str(caught.value).startswith(f"{key}: ")
