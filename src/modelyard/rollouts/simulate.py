"""Proof by simulation: synthetic metric streams with known effects, judged by the controller's own code.

    python -m modelyard.rollouts.simulate [--rollouts 200] [--seed 16]

Each simulated rollout is one canary step: requests arrive one by one and are split between control and
candidate by the allocation; every ``look`` requests :func:`modelyard.rollouts.judgement.decide` — the function
the rollout controller calls — judges both arms in the same window, until it rolls back, passes (promotes), halts
on a sample-ratio mismatch, or reaches the maximum duration and pauses as inconclusive. The table counts what
happened over ``--rollouts`` rollouts per case and checks each against what the issue requires.

The streams: latency is log-normal (median 0.8 s, sigma = 0.4 on the log scale: a coefficient of variation of about
42 %, typical of time per output token and of end-to-end latency at a fixed output length); errors are Bernoulli.
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from modelyard.rollouts.judgement import Action, ArmData, Guardrail, Plan, decide
from modelyard.rollouts.stats import Summary, Verdict, compare_means, fixed_horizon_means

LATENCY_MEDIAN_S = 0.8
LATENCY_SIGMA = 0.4


@dataclass(frozen=True)
class Case:
    name: str
    guardrails: tuple[Guardrail, ...]
    slowdown: float = 0.0  # candidate latency multiplier - 1
    control_errors: float = 0.01
    candidate_errors: float = 0.01
    share: float = 0.5  # the candidate's intended share
    actual_share: float | None = None  # the share the broken splitter really gives it
    look: int = 100
    max_requests: int = 5000
    run_to_end: bool = False  # an experiment that runs its full duration (a pass does not end it)


@dataclass
class Outcome:
    action: Action
    requests: int


def _stream(case: Case, rng: random.Random, n: int) -> tuple[list[bool], list[float], list[bool]]:
    share = case.share if case.actual_share is None else case.actual_share
    arms = [rng.random() < share for _ in range(n)]
    mu = math.log(LATENCY_MEDIAN_S)
    latency = [rng.lognormvariate(mu + (math.log1p(case.slowdown) if arm else 0.0), LATENCY_SIGMA) for arm in arms]
    errors = [rng.random() < (case.candidate_errors if arm else case.control_errors) for arm in arms]
    return arms, latency, errors


def _arm(latencies: list[float], errors: int, requests: int) -> ArmData:
    return ArmData(
        requests=requests,
        samples={"latency": latencies},
        summaries={"error_rate": Summary.of_rate(errors, requests)},
    )


def run_rollout(case: Case, rng: random.Random) -> Outcome:
    """One rollout of ``case``: looks every ``case.look`` requests until an action other than wait."""
    arms, latency, errors = _stream(case, rng, case.max_requests)
    plan = Plan(alpha=0.05, looks=math.ceil(case.max_requests / case.look), min_sample=50, tuning_n=2000)
    for seen in range(case.look, case.max_requests + 1, case.look):
        control_lat = [latency[i] for i in range(seen) if not arms[i]]
        treat_lat = [latency[i] for i in range(seen) if arms[i]]
        control_err = sum(1 for i in range(seen) if errors[i] and not arms[i])
        treat_err = sum(1 for i in range(seen) if errors[i] and arms[i])
        decision = decide(
            case.guardrails,
            _arm(control_lat, control_err, len(control_lat)),
            _arm(treat_lat, treat_err, len(treat_lat)),
            case.share,
            plan,
            final=seen >= case.max_requests,
        )
        if decision.action is Action.ADVANCE and case.run_to_end and seen < case.max_requests:
            continue
        if decision.action is not Action.WAIT:
            return Outcome(decision.action, seen)
    return Outcome(Action.PAUSE, case.max_requests)  # pragma: no cover - the final look never waits


def peeking_type_one(rng: random.Random, rate: float, look: int, max_requests: int) -> tuple[bool, bool]:
    """An A/A stream of a rate peeked every ``look`` requests: did the anytime-valid test ever call a
    difference, and did the naive fixed-horizon z-test?"""
    sequential = naive = False
    counts = [0, 0]
    hits = [0, 0]
    for seen in range(1, max_requests + 1):
        arm = rng.random() < 0.5
        counts[arm] += 1
        hits[arm] += rng.random() < rate
        if seen % look or min(counts) < 2:
            continue
        control, treatment = Summary.of_rate(hits[0], counts[0]), Summary.of_rate(hits[1], counts[1])
        result = compare_means("rate", control, treatment, tuning_n=2000)
        sequential = sequential or result.verdict in (Verdict.BETTER, Verdict.WORSE)
        naive = naive or fixed_horizon_means(control, treatment)
        if sequential and naive:
            break
    return sequential, naive


LATENCY = (Guardrail("latency", 0.05),)
ERRORS = (Guardrail("error_rate", 0.01),)

CASES = (
    Case("identical candidate (latency)", LATENCY, look=250),
    Case("candidate 10 % slower", LATENCY, slowdown=0.10, look=250),
    Case("identical candidate (errors)", ERRORS, control_errors=0.02, candidate_errors=0.02),
    Case("errors 2 % → 5 %", ERRORS, control_errors=0.02, candidate_errors=0.05),
    Case("split 45/55 on a 50/50 allocation", ERRORS, actual_share=0.55, run_to_end=True),
    Case("split 50/50 as allocated (SRM false alarm)", ERRORS, run_to_end=True),
)


def _rate(outcomes: list[Outcome], action: Action, within: int | None = None) -> float:
    hits = [o for o in outcomes if o.action is action and (within is None or o.requests <= within)]
    return len(hits) / len(outcomes)


def _median_requests(outcomes: list[Outcome], action: Action) -> str:
    chosen = [o.requests for o in outcomes if o.action is action]
    return f"{statistics.median(chosen):.0f}" if chosen else "-"


Check = tuple[str, Callable[[list[Outcome]], float], Callable[[float], bool]]

CHECKS: dict[str, list[Check]] = {
    "identical candidate (latency)": [("rolled back ≤ 5 %", lambda o: _rate(o, Action.ROLLBACK), lambda v: v <= 0.05)],
    "candidate 10 % slower": [
        ("promoted ≤ 1 %", lambda o: _rate(o, Action.ADVANCE), lambda v: v <= 0.01),
        ("rolled back within 2 000 requests ≥ 90 %", lambda o: _rate(o, Action.ROLLBACK, 2000), lambda v: v >= 0.9),
    ],
    "identical candidate (errors)": [("rolled back ≤ 5 %", lambda o: _rate(o, Action.ROLLBACK), lambda v: v <= 0.05)],
    "errors 2 % → 5 %": [("promoted ≤ 1 %", lambda o: _rate(o, Action.ADVANCE), lambda v: v <= 0.01)],
    "split 45/55 on a 50/50 allocation": [
        ("halted within 5 000 requests", lambda o: _rate(o, Action.HALT, 5000), lambda v: v >= 0.9)
    ],
    "split 50/50 as allocated (SRM false alarm)": [
        ("halted ≤ 1 %", lambda o: _rate(o, Action.HALT), lambda v: v <= 0.01)
    ],
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m modelyard.rollouts.simulate", description=__doc__)
    parser.add_argument("--rollouts", type=int, default=200, help="simulated rollouts per case (default 200)")
    parser.add_argument("--seed", type=int, default=16)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    print(
        "| case | looks | promoted | rolled back | paused | halted | median requests to rollback / halt "
        "| requirement | measured | met |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    failed = 0
    for index, case in enumerate(CASES):
        rng = random.Random(args.seed * 1000 + index)
        outcomes = [run_rollout(case, rng) for _ in range(args.rollouts)]
        decided = _median_requests(outcomes, Action.ROLLBACK) + " / " + _median_requests(outcomes, Action.HALT)
        for position, (requirement, measure, ok) in enumerate(CHECKS[case.name]):
            value = measure(outcomes)
            failed += not ok(value)
            head = (
                f"| {case.name} | every {case.look} to {case.max_requests} | {_rate(outcomes, Action.ADVANCE):.1%} "
                f"| {_rate(outcomes, Action.ROLLBACK):.1%} | {_rate(outcomes, Action.PAUSE):.1%} "
                f"| {_rate(outcomes, Action.HALT):.1%} | {decided} "
                if position == 0
                else "| ″ | | | | | | "
            )
            print(f"{head}| {requirement} | {value:.1%} | {'yes' if ok(value) else 'NO'} |")
    rng = random.Random(args.seed)
    peeks = [peeking_type_one(rng, 0.05, 100, 5000) for _ in range(args.rollouts)]
    sequential = sum(s for s, _ in peeks) / len(peeks)
    naive = sum(n for _, n in peeks) / len(peeks)
    failed += sequential > 0.05
    print(
        f"| A/A error rate 5 %, peeking (any verdict other than no difference) | every 100 to 5000 | | | | | "
        f"| sequential ≤ alpha = 5 % | {sequential:.1%} | {'yes' if sequential <= 0.05 else 'NO'} |"
    )
    print(
        f"| ″ naive fixed-horizon z-test peeked the same way | every 100 to 5000 | | | | | | contrast | {naive:.1%} | |"
    )
    print(
        f"\n{args.rollouts} rollouts per case, seed {args.seed}, alpha = 0.05, {time.perf_counter() - started:.0f} s",
        file=sys.stderr,
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
