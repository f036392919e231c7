"""Eval evidence in the registry's database: runs with their case results, quant reports, and model gates.

A run is written in one transaction after it ended, so a reader sees either the whole run or nothing; its status
is ``complete`` only when every case has an outcome. An interrupted or aborted run is stored as ``aborted`` (with
the cases that did finish, for debugging) and gates never count it.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from modelyard.evals.gates import GateSpec, gates_to_json, parse_gates
from modelyard.evals.records import COMPLETE, CaseResult, QuantRecord, RunRecord
from modelyard.evals.tables import EvalCaseResult, EvalRun, ModelGates, QuantReport
from modelyard.registry.errors import InvalidRequest, NotFound
from modelyard.registry.references import parse_ref
from modelyard.registry.tables import ModelVersion, RegisteredModel, RegistryEvent
from modelyard.store.base import utcnow
from modelyard.store.database import Database


class EvalStore:
    def __init__(self, database: Database) -> None:
        self.database = database

    # -- runs -----------------------------------------------------------------------------------------------

    def save_run(self, run: RunRecord) -> RunRecord:
        with self.database.transaction() as session:
            version_id = version_row_id(session, run.version) if run.version else None
            summary = run.summary
            row = EvalRun(
                run_id=run.run_id,
                model_version_id=version_id,
                suite=run.suite,
                suite_sha256=run.suite_sha256,
                dataset_sha256=run.dataset_sha256,
                target=run.target,
                gateway_url=run.gateway_url,
                status=run.status,
                total=summary["total"],
                passed=summary["passed"],
                failed=summary["failed"],
                errors=summary["errors"],
                pass_rate=summary["pass_rate"],
                pass_threshold=run.pass_threshold,
                threshold_met=run.threshold_met,
                temperature=run.temperature,
                seed=run.seed,
                cached_from=run.cached_from,
                abort_reason=run.abort_reason,
                summary=summary,
                config=run.config,
                report_path=run.report_path,
                created_by=run.created_by,
                started_at=run.started_at,
                finished_at=run.finished_at,
            )
            session.add(row)
            session.flush()
            session.add_all(
                EvalCaseResult(
                    run_pk=row.id,
                    position=case.position,
                    case_id=case.case_id,
                    request=case.request,
                    expected=case.expected,
                    case_metadata=case.metadata,
                    output=case.output,
                    passed=case.passed,
                    score=case.score,
                    error=case.error,
                    assertions=list(case.assertions),
                    latency_ms=case.latency_ms,
                    prompt_tokens=case.prompt_tokens,
                    completion_tokens=case.completion_tokens,
                    answered_by=case.answered_by,
                    attempts=case.attempts,
                )
                for case in run.cases
            )
        return run

    def get_run(self, run_id: str) -> RunRecord:
        """A run by id (or an unambiguous prefix of one), with its cases."""
        with self.database.transaction() as session:
            rows = session.scalars(select(EvalRun).where(EvalRun.run_id.like(f"{_escape(run_id)}%", escape="\\")))
            matches = list(rows)
            if not matches:
                raise NotFound(f"No eval run '{run_id}'.", param="run")
            if len(matches) > 1 and not any(m.run_id == run_id for m in matches):
                raise InvalidRequest(f"'{run_id}' matches {len(matches)} runs; give more of the id.", param="run")
            row = next((m for m in matches if m.run_id == run_id), matches[0])
            cases = session.scalars(
                select(EvalCaseResult).where(EvalCaseResult.run_pk == row.id).order_by(EvalCaseResult.position)
            ).all()
            return _run_record(session, row, [_case_record(c) for c in cases])

    def list_runs(self, model: str | None = None, suite: str | None = None, limit: int = 50) -> list[RunRecord]:
        with self.database.transaction() as session:
            query = select(EvalRun)
            if model is not None:
                ref = parse_ref(model)
                query = query.join(ModelVersion, EvalRun.model_version_id == ModelVersion.id).join(RegisteredModel)
                query = query.where(RegisteredModel.name == ref.name)
                if ref.version is not None:
                    query = query.where(ModelVersion.number == ref.version)
            if suite is not None:
                query = query.where(EvalRun.suite == suite)
            rows = session.scalars(query.order_by(EvalRun.id.desc()).limit(limit)).all()
            return [_run_record(session, row, []) for row in rows]

    # -- quant reports ----------------------------------------------------------------------------------------

    def save_quant(self, report: QuantRecord) -> QuantRecord:
        with self.database.transaction() as session:
            session.add(
                QuantReport(
                    report_id=report.report_id,
                    candidate_version_id=version_row_id(session, report.candidate),
                    base_version_id=version_row_id(session, report.base),
                    text_path=report.text_path,
                    text_sha256=report.text_sha256,
                    ctx_size=report.ctx_size,
                    chunks=report.chunks,
                    ppl_base=report.ppl_base,
                    ppl_candidate=report.ppl_candidate,
                    ppl_ratio=report.ppl_ratio,
                    kld_mean=report.kld_mean,
                    kld_p99=report.kld_p99,
                    top_token_agreement=report.top_token_agreement,
                    detail=report.detail,
                    created_by=report.created_by,
                    created_at=report.created_at,
                )
            )
        return report

    def quant_reports(self, version: str, limit: int = 20) -> list[QuantRecord]:
        """Reports where ``version`` ("name:N") is the candidate, newest first."""
        with self.database.transaction() as session:
            version_id = version_row_id(session, version)
            rows = session.scalars(
                select(QuantReport)
                .where(QuantReport.candidate_version_id == version_id)
                .order_by(QuantReport.id.desc())
                .limit(limit)
            ).all()
            return [quant_record(session, row) for row in rows]

    # -- gates ------------------------------------------------------------------------------------------------

    def set_gates(self, model: str, spec: GateSpec | None, actor: str) -> GateSpec | None:
        """Replace (or with ``None`` remove) a model's gates; recorded as a ``gates_set`` registry event."""
        with self.database.transaction() as session:
            row = session.scalar(select(RegisteredModel).where(RegisteredModel.name == model).with_for_update())
            if row is None:
                raise NotFound(f"No registered model named '{model}'.", param="model")
            current = session.scalar(select(ModelGates).where(ModelGates.model_id == row.id))
            now = utcnow()
            if spec is None:
                if current is not None:
                    session.delete(current)
            elif current is None:
                session.add(ModelGates(model_id=row.id, spec=gates_to_json(spec), updated_by=actor, updated_at=now))
            else:
                current.spec, current.updated_by, current.updated_at = gates_to_json(spec), actor, now
            detail: dict[str, Any] = {"gates": gates_to_json(spec)["gates"] if spec else []}
            session.add(RegistryEvent(model_id=row.id, kind="gates_set", actor=actor, at=now, detail=detail))
        return spec

    def get_gates(self, model: str) -> GateSpec | None:
        with self.database.transaction() as session:
            row = session.scalar(select(RegisteredModel).where(RegisteredModel.name == model))
            if row is None:
                raise NotFound(f"No registered model named '{model}'.", param="model")
            return load_gates(session, row.id)


def load_gates(session: Session, model_id: int) -> GateSpec | None:
    row = session.scalar(select(ModelGates).where(ModelGates.model_id == model_id))
    return parse_gates(row.spec, "stored gates") if row is not None else None


def version_row_id(session: Session, key: str) -> int:
    ref = parse_ref(key)
    if ref.version is None:
        raise InvalidRequest(f"'{key}' does not name a version (NAME:N).", param="version")
    row_id = session.scalar(
        select(ModelVersion.id)
        .join(RegisteredModel, ModelVersion.model_id == RegisteredModel.id)
        .where(RegisteredModel.name == ref.name, ModelVersion.number == ref.version)
    )
    if row_id is None:
        raise NotFound(f"No registered version '{key}'.", param="version")
    return row_id


def version_key(session: Session, version_id: int | None) -> str | None:
    if version_id is None:
        return None
    row = session.execute(
        select(RegisteredModel.name, ModelVersion.number)
        .join(RegisteredModel, ModelVersion.model_id == RegisteredModel.id)
        .where(ModelVersion.id == version_id)
    ).first()
    return f"{row[0]}:{row[1]}" if row else None


def latest_complete_runs(session: Session, version_id: int) -> dict[str, EvalRun]:
    """suite -> the newest complete run of that suite against the version."""
    rows = session.scalars(
        select(EvalRun)
        .where(EvalRun.model_version_id == version_id, EvalRun.status == COMPLETE)
        .order_by(EvalRun.id.desc())
    ).all()
    latest: dict[str, EvalRun] = {}
    for row in rows:
        latest.setdefault(row.suite, row)
    return latest


def case_outcomes(session: Session, run_pk: int) -> dict[str, bool]:
    rows = session.execute(
        select(EvalCaseResult.case_id, EvalCaseResult.passed).where(EvalCaseResult.run_pk == run_pk)
    ).all()
    return {case_id: passed for case_id, passed in rows}


def quant_record(session: Session, row: QuantReport) -> QuantRecord:
    return QuantRecord(
        report_id=row.report_id,
        base=version_key(session, row.base_version_id) or "?",
        candidate=version_key(session, row.candidate_version_id) or "?",
        text_path=row.text_path,
        text_sha256=row.text_sha256,
        ctx_size=row.ctx_size,
        chunks=row.chunks,
        ppl_base=row.ppl_base,
        ppl_candidate=row.ppl_candidate,
        ppl_ratio=row.ppl_ratio,
        kld_mean=row.kld_mean,
        kld_p99=row.kld_p99,
        top_token_agreement=row.top_token_agreement,
        created_by=row.created_by,
        created_at=row.created_at,
        detail=dict(row.detail or {}),
    )


def _run_record(session: Session, row: EvalRun, cases: list[CaseResult]) -> RunRecord:
    return RunRecord(
        run_id=row.run_id,
        suite=row.suite,
        suite_sha256=row.suite_sha256,
        dataset_sha256=row.dataset_sha256,
        target=row.target,
        gateway_url=row.gateway_url,
        status=row.status,
        pass_threshold=row.pass_threshold,
        temperature=row.temperature,
        seed=row.seed,
        created_by=row.created_by,
        started_at=row.started_at,
        finished_at=row.finished_at,
        version=version_key(session, row.model_version_id),
        cases=tuple(cases),
        cached_from=row.cached_from,
        abort_reason=row.abort_reason,
        config=dict(row.config or {}),
        report_path=row.report_path,
        stored_summary=dict(row.summary or {}),
    )


def _case_record(row: EvalCaseResult) -> CaseResult:
    return CaseResult(
        position=row.position,
        case_id=row.case_id,
        request=dict(row.request or {}),
        expected=row.expected,
        metadata=dict(row.case_metadata or {}),
        output=row.output,
        passed=row.passed,
        score=row.score,
        error=row.error,
        assertions=tuple(row.assertions or ()),
        latency_ms=row.latency_ms,
        prompt_tokens=row.prompt_tokens,
        completion_tokens=row.completion_tokens,
        answered_by=row.answered_by,
        attempts=row.attempts,
    )


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def version_evaluations(evals: EvalStore, key: str, limit: int = 10) -> dict[str, Any]:
    """What the model card and ``models show`` say about a version's evidence: recent runs and quant reports."""
    runs = evals.list_runs(key, limit=limit)
    return {
        "eval_runs": [
            {
                "run_id": r.run_id,
                "suite": r.suite,
                "status": r.status,
                "pass_rate": r.pass_rate,
                "pass_threshold": r.pass_threshold,
                "threshold_met": r.threshold_met,
                "total": r.total,
                "finished_at": r.to_json(with_cases=False)["finished_at"],
                "report": r.report_path,
            }
            for r in runs
        ],
        "quant_reports": [q.to_json() for q in evals.quant_reports(key, limit=limit)],
    }
