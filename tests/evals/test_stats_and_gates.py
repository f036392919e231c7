"""McNemar's exact test against hand-computed values, and the gate decision function."""

from __future__ import annotations

import math

import pytest

from modelyard.evals.gates import Evidence, QuantEvidence, RunEvidence, evaluate_gates, parse_gates
from modelyard.evals.stats import mcnemar_exact, paired_outcomes, percentile
from modelyard.evals.suite import SuiteError


@pytest.mark.parametrize(
    ("b", "c", "p"),
    [
        (0, 0, 1.0),
        (0, 5, 0.0625),  # 2 * 0.5^5
        (2, 10, 2 * (1 + 12 + 66) / 4096),  # 0.03857
        (5, 5, 1.0),
        (1, 6, 2 * (1 + 7) / 128),  # 0.125
        (3, 17, 2 * sum(math.comb(20, i) for i in range(4)) / 2**20),  # 0.00258
    ],
)
def test_mcnemar_exact_matches_known_values(b: int, c: int, p: float) -> None:
    test = mcnemar_exact(b, c)
    assert test.p_value == pytest.approx(p, rel=1e-12)
    assert test.discordant == b + c
    assert mcnemar_exact(c, b).p_value == pytest.approx(p)  # symmetric


def test_mcnemar_direction_and_pairing() -> None:
    assert mcnemar_exact(10, 0).worse() and not mcnemar_exact(0, 10).worse()
    assert mcnemar_exact(0, 10).significant() and not mcnemar_exact(1, 2).significant()
    a = {"x": True, "y": True, "z": False, "only-a": True}
    b = {"x": False, "y": True, "z": True, "only-b": False}
    test = paired_outcomes(a, b)
    assert (test.only_a, test.only_b) == (1, 1)
    with pytest.raises(ValueError):
        mcnemar_exact(-1, 0)
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5 and percentile([], 50) is None


GATES = {
    "gates": [
        {"type": "pass_rate", "suite": "smoke", "min": 0.9},
        {"type": "ppl_ratio", "max": 1.05, "name": "ppl"},
        {"type": "kld_mean", "max": 0.05},
        {"type": "top_token_agreement", "min": 0.9},
        {"type": "no_regression", "suite": "smoke", "alpha": 0.05},
    ]
}


def run(version: str, outcomes: dict[str, bool]) -> RunEvidence:
    return RunEvidence("run-" + version, "smoke", version, sum(outcomes.values()) / len(outcomes), len(outcomes),
                       outcomes)  # fmt: skip


def test_gates_pass_with_good_evidence_and_name_the_numbers() -> None:
    spec = parse_gates(GATES, "gates.yaml")
    good = {f"c{i}": True for i in range(20)}
    evidence = Evidence("m:2", "m:1", {"smoke": run("m:2", good)}, {"smoke": run("m:1", good)},
                        QuantEvidence("quant-1", "m:1", 1.01, 0.01, 0.1, 0.97))  # fmt: skip
    decision = evaluate_gates(spec, evidence)
    assert decision.allowed, decision.explain()
    assert [r.gate for r in decision.results] == ["pass_rate", "ppl", "kld_mean", "top_token_agreement",
                                                  "no_regression"]  # fmt: skip


def test_a_worse_quantization_and_a_regression_are_refused_with_numbers() -> None:
    spec = parse_gates(GATES, "gates.yaml")
    before = {f"c{i}": True for i in range(20)}
    after = {f"c{i}": i >= 8 for i in range(20)}  # 8 regressions, pass rate 0.6
    evidence = Evidence("m:2", "m:1", {"smoke": run("m:2", after)}, {"smoke": run("m:1", before)},
                        QuantEvidence("quant-9", "m:1", 1.9, 0.61, 3.2, 0.71))  # fmt: skip
    decision = evaluate_gates(spec, evidence)
    assert not decision.allowed
    failed = {r.gate: r for r in decision.failed}
    assert set(failed) == {"pass_rate", "ppl", "kld_mean", "top_token_agreement", "no_regression"}
    assert "PPL ratio 1.9000 > 1.05" in failed["ppl"].message and failed["ppl"].numbers["value"] == 1.9
    assert "pass rate 0.600 < 0.9" in failed["pass_rate"].message
    assert "8 regressed / 0 improved" in failed["no_regression"].message
    assert failed["no_regression"].numbers["p_value"] == pytest.approx(2 / 2**8)
    assert "gate 'ppl' failed: PPL ratio" in decision.explain()


def test_missing_evidence_fails_and_self_promotion_has_no_regression() -> None:
    spec = parse_gates(GATES, "gates.yaml")
    decision = evaluate_gates(spec, Evidence("m:1", "m:1"))
    messages = {r.gate: r.message for r in decision.results}
    assert messages["pass_rate"] == "no complete run of suite 'smoke' for m:1"
    assert messages["ppl"].startswith("no quant report for m:1")
    assert next(r for r in decision.results if r.gate == "no_regression").passed


def test_gate_files_are_validated() -> None:
    with pytest.raises(SuiteError, match=r"gates.yaml: field 'gates\[0\].min': Expected `float` <= 1"):
        parse_gates({"gates": [{"type": "pass_rate", "suite": "s", "min": 2}]}, "gates.yaml")
    with pytest.raises(SuiteError, match=r"field 'gates\[0\].type': Invalid value 'ppl'"):
        parse_gates({"gates": [{"type": "ppl", "max": 1}]}, "gates.yaml")
    assert parse_gates({"gates": []}, "x").aliases == ["production"]
