"""Promotion gates: what a version must have proven before an alias (``production`` by default) may point at it.

A model declares its gates as data (YAML or JSON). Deciding is a pure function of the gates and the stored
evidence (latest complete eval runs, latest quant report), so it is tested without a database, and the decision
carries the numbers that explain a refusal. Missing evidence fails a gate: "no run of suite X" is a reason to
refuse, not to wave a version through.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import msgspec
import yaml

from modelyard.evals.stats import paired_outcomes
from modelyard.evals.suite import SuiteError, convert

Fraction = Annotated[float, msgspec.Meta(ge=0, le=1)]
Positive = Annotated[float, msgspec.Meta(gt=0)]
SuiteName = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]


class _Gate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, tag_field="type"):
    name: str | None = None

    @property
    def kind(self) -> str:
        return type(self).__struct_config__.tag  # type: ignore[return-value]

    @property
    def label(self) -> str:
        return self.name or self.kind


class PassRate(_Gate, tag="pass_rate"):
    suite: SuiteName
    min: Fraction


class NoRegression(_Gate, tag="no_regression"):
    """No significant drop (exact McNemar, p < alpha) against the version the alias points at now."""

    suite: SuiteName
    alpha: Annotated[float, msgspec.Meta(gt=0, lt=1)] = 0.05


class PplRatio(_Gate, tag="ppl_ratio"):
    max: Positive


class KldMean(_Gate, tag="kld_mean"):
    max: Positive


class KldP99(_Gate, tag="kld_p99"):
    max: Positive


class TopTokenAgreement(_Gate, tag="top_token_agreement"):
    min: Fraction


Gate = PassRate | NoRegression | PplRatio | KldMean | KldP99 | TopTokenAgreement


class GateSpec(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    gates: list[Gate]
    aliases: list[str] = msgspec.field(default_factory=lambda: ["production"])  # moving any of these is gated


def parse_gates(data: Any, where: str) -> GateSpec:
    if not isinstance(data, dict):
        raise SuiteError(f"{where}: gates are a mapping with a 'gates' list, got {type(data).__name__}")
    return convert(data, GateSpec, where)


def load_gates_file(path: Path) -> GateSpec:
    if not path.is_file():
        raise SuiteError(f"{path}: gates file not found")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise SuiteError(f"{path}: not valid YAML: {exc}") from None
    return parse_gates(data, str(path))


def gates_to_json(spec: GateSpec) -> dict[str, Any]:
    return msgspec.to_builtins(spec)


@dataclass(frozen=True)
class RunEvidence:
    run_id: str
    suite: str
    version: str  # "name:N"
    pass_rate: float
    total: int
    outcomes: dict[str, bool]  # case id -> passed


@dataclass(frozen=True)
class QuantEvidence:
    report_id: str
    base: str  # "name:N"
    ppl_ratio: float
    kld_mean: float
    kld_p99: float
    top_token_agreement: float


@dataclass(frozen=True)
class Evidence:
    candidate: str  # "name:N"
    current: str | None  # where the alias points now
    runs: dict[str, RunEvidence] = field(default_factory=dict)  # suite -> latest complete run of the candidate
    current_runs: dict[str, RunEvidence] = field(default_factory=dict)  # suite -> latest complete run of current
    quant: QuantEvidence | None = None  # latest quant report with the candidate as candidate


@dataclass(frozen=True)
class GateResult:
    gate: str
    type: str
    passed: bool
    message: str
    numbers: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "gate": self.gate,
            "type": self.type,
            "passed": self.passed,
            "message": self.message,
            "numbers": self.numbers,
        }


@dataclass(frozen=True)
class GateDecision:
    results: tuple[GateResult, ...]

    @property
    def allowed(self) -> bool:
        return all(r.passed for r in self.results)

    @property
    def failed(self) -> tuple[GateResult, ...]:
        return tuple(r for r in self.results if not r.passed)

    def explain(self) -> str:
        return "; ".join(f"gate '{r.gate}' failed: {r.message}" for r in self.failed)


def evaluate_gates(spec: GateSpec, evidence: Evidence) -> GateDecision:
    return GateDecision(tuple(_evaluate(gate, evidence) for gate in spec.gates))


def _evaluate(gate: Gate, ev: Evidence) -> GateResult:
    def outcome(passed: bool, message: str, **numbers: Any) -> GateResult:
        return GateResult(gate.label, gate.kind, passed, message, numbers)

    if isinstance(gate, PassRate):
        run = ev.runs.get(gate.suite)
        if run is None:
            return outcome(False, f"no complete run of suite '{gate.suite}' for {ev.candidate}", required=gate.min)
        ok = run.pass_rate >= gate.min
        return outcome(
            ok,
            f"suite '{gate.suite}' pass rate {run.pass_rate:.3f} {'≥' if ok else '<'} {gate.min:g} "
            f"(run {run.run_id}, {run.total} cases)",
            pass_rate=run.pass_rate,
            required=gate.min,
            run=run.run_id,
        )
    if isinstance(gate, NoRegression):
        return _no_regression(gate, ev, outcome)
    quant = ev.quant
    if quant is None:
        return outcome(False, f"no quant report for {ev.candidate} (`modelyard eval quant`)")
    checks: dict[type, tuple[str, float, bool]] = {
        PplRatio: ("PPL ratio", quant.ppl_ratio, True),
        KldMean: ("mean KLD", quant.kld_mean, True),
        KldP99: ("p99 KLD", quant.kld_p99, True),
        TopTokenAgreement: ("top-token agreement", quant.top_token_agreement, False),
    }
    what, value, is_max = checks[type(gate)]
    limit = gate.max if is_max else gate.min  # type: ignore[union-attr]
    ok = value <= limit if is_max else value >= limit
    sign = ("≤" if ok else ">") if is_max else ("≥" if ok else "<")
    return outcome(
        ok,
        f"{what} {value:.4f} {sign} {limit:g} ({ev.candidate} vs {quant.base}, report {quant.report_id})",
        value=value,
        limit=limit,
        report=quant.report_id,
        base=quant.base,
    )


def _no_regression(gate: NoRegression, ev: Evidence, outcome: Any) -> GateResult:
    if ev.current is None or ev.current == ev.candidate:
        return outcome(
            True, f"nothing to regress against ({ev.candidate} is {'already current' if ev.current else 'first'})"
        )
    candidate, current = ev.runs.get(gate.suite), ev.current_runs.get(gate.suite)
    if candidate is None:
        return outcome(False, f"no complete run of suite '{gate.suite}' for {ev.candidate}")
    if current is None:
        return outcome(False, f"no complete run of suite '{gate.suite}' for the current version {ev.current}")
    test = paired_outcomes(current.outcomes, candidate.outcomes)
    worse = test.worse(gate.alpha)
    return outcome(
        not worse,
        f"suite '{gate.suite}': {ev.candidate} {candidate.pass_rate:.3f} vs {ev.current} {current.pass_rate:.3f}, "
        f"{test.only_a} regressed / {test.only_b} improved, McNemar p={test.p_value:.4g} "
        f"({'significant' if test.significant(gate.alpha) else 'not significant'} at {gate.alpha:g})",
        p_value=test.p_value,
        regressed=test.only_a,
        improved=test.only_b,
        candidate_pass_rate=candidate.pass_rate,
        current_pass_rate=current.pass_rate,
    )
