"""The simulator drives the controller's decision code: a few rollouts per case reach the expected outcomes, and
the command prints the table."""

from __future__ import annotations

import random

import pytest

from modelyard.rollouts.judgement import Action
from modelyard.rollouts.simulate import CASES, Case, main, peeking_type_one, run_rollout


def _case(name: str) -> Case:
    return next(case for case in CASES if case.name == name)


def test_a_regression_is_rolled_back_and_a_broken_split_halted() -> None:
    rng = random.Random(1)
    assert all(run_rollout(_case("candidate 10 % slower"), rng).action is Action.ROLLBACK for _ in range(3))
    assert run_rollout(_case("split 45/55 on a 50/50 allocation"), rng).action is Action.HALT


def test_peeking_contrast() -> None:
    rng = random.Random(2)
    runs = [peeking_type_one(rng, 0.05, 100, 3000) for _ in range(40)]
    assert sum(naive for _, naive in runs) > sum(sequential for sequential, _ in runs)


def test_the_command_prints_the_table(capsys: pytest.CaptureFixture[str]) -> None:
    main(["--rollouts", "3", "--seed", "5"])
    out = capsys.readouterr().out
    assert out.startswith("| case | looks | promoted | rolled back |")
    assert "naive fixed-horizon z-test" in out
    assert out.count("\n") >= 2 + len(CASES) + 2
