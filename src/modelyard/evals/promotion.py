"""The registry's hook: check a model's gates inside the transaction that moves a gated alias.

Reading the evidence in the same transaction (under the model's row lock) means the decision and the move see
the same state. A refusal raises :class:`~modelyard.registry.errors.PromotionGateFailed` naming each failed gate
and its numbers; ``force`` lets the move through and returns event details (``forced: true`` and the failed
gates) for the append-only history.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from modelyard.evals.gates import Evidence, QuantEvidence, RunEvidence, evaluate_gates
from modelyard.evals.storage import case_outcomes, latest_complete_runs, load_gates, quant_record
from modelyard.evals.tables import EvalRun, QuantReport
from modelyard.registry.errors import PromotionGateFailed


def check_promotion(
    session: Session,
    model_id: int,
    model_name: str,
    alias: str,
    candidate: tuple[int, int],
    current: tuple[int, int] | None,
    force: bool,
) -> dict[str, Any]:
    """``candidate``/``current`` are (row id, version number). Returns event details; raises when refused."""
    spec = load_gates(session, model_id)
    if spec is None or alias not in spec.aliases:
        return {}
    candidate_key = f"{model_name}:{candidate[1]}"
    current_key = f"{model_name}:{current[1]}" if current is not None else None
    evidence = Evidence(
        candidate=candidate_key,
        current=current_key,
        runs=_runs(session, candidate[0], candidate_key),
        current_runs=_runs(session, current[0], current_key) if current is not None and current_key else {},
        quant=_quant(session, candidate[0]),
    )
    decision = evaluate_gates(spec, evidence)
    results = [r.to_json() for r in decision.results]
    if decision.allowed:
        return {"gates": results}
    if not force:
        raise PromotionGateFailed(
            f"Promotion of {candidate_key} to '{alias}' refused: {decision.explain()}. "
            "Fix the evidence, or override with --force (recorded in the history).",
            gates=[r.to_json() for r in decision.failed],
        )
    return {"gates": results, "forced": True, "failed_gates": [r.to_json() for r in decision.failed]}


def _runs(session: Session, version_id: int, key: str) -> dict[str, RunEvidence]:
    runs: dict[str, RunEvidence] = {}
    for suite, row in latest_complete_runs(session, version_id).items():
        runs[suite] = _run_evidence(session, row, key)
    return runs


def _run_evidence(session: Session, row: EvalRun, key: str) -> RunEvidence:
    return RunEvidence(row.run_id, row.suite, key, row.pass_rate, row.total, case_outcomes(session, row.id))


def _quant(session: Session, version_id: int) -> QuantEvidence | None:
    row = session.scalar(
        select(QuantReport)
        .where(QuantReport.candidate_version_id == version_id)
        .order_by(QuantReport.id.desc())
        .limit(1)
    )
    if row is None:
        return None
    record = quant_record(session, row)
    return QuantEvidence(
        record.report_id, record.base, record.ppl_ratio, record.kld_mean, record.kld_p99, record.top_token_agreement
    )
