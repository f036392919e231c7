"""Both arms' data in the same window, read from the request log: what one look of the controller judges.

The window is the rollout's current step, from the moment its share took effect to now, for both arms alike:
the candidate is never compared with the control's history. Shadow copies are left out (they are not served
traffic); the arms are told apart by the model version that answered.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select

from modelyard.observability.request_log_table import RequestLogRow
from modelyard.rollouts.judgement import ArmData
from modelyard.rollouts.live_eval import sampled
from modelyard.rollouts.stats import Summary
from modelyard.rollouts.tables import FeedbackRow
from modelyard.store.database import Database

MAX_ROWS = 50_000  # per look: a bounded read, newest first


@dataclass
class _Arm:
    requests: int = 0
    errors: int = 0
    empty: int = 0
    latency: list[float] | None = None
    ttft: list[float] | None = None
    tpot: list[float] | None = None
    output_tokens: list[float] | None = None
    feedback: list[float] | None = None
    eval_passed: int = 0
    eval_scored: int = 0

    def __post_init__(self) -> None:
        self.latency, self.ttft, self.tpot, self.output_tokens, self.feedback = [], [], [], [], []

    def data(self) -> ArmData:
        assert self.latency is not None and self.ttft is not None and self.tpot is not None
        assert self.output_tokens is not None and self.feedback is not None
        return ArmData(
            requests=self.requests,
            samples={"latency": self.latency, "ttft": self.ttft, "tpot": self.tpot},
            summaries={
                "error_rate": Summary.of_rate(self.errors, self.requests),
                "empty_rate": Summary.of_rate(self.empty, self.requests - self.errors),
                "output_tokens": Summary.of(self.output_tokens),
                "feedback": Summary.of(self.feedback),
                "eval_score": Summary.of_rate(self.eval_passed, self.eval_scored),
            },
        )


@dataclass(frozen=True)
class Window:
    control: ArmData
    candidate: ArmData


def read_window(
    database: Database,
    route: str,
    control_version: int,
    candidate_version: int,
    since: datetime,
    live_eval: Callable[[dict[str, Any]], bool | None] | None = None,
    eval_sample: float = 1.0,
) -> Window:
    """Both arms' data for requests to ``route`` received since ``since``."""
    arms = {str(control_version): _Arm(), str(candidate_version): _Arm()}
    statement = (
        select(RequestLogRow, FeedbackRow.score)
        .outerjoin(FeedbackRow, FeedbackRow.request_id == RequestLogRow.request_id)
        .where(
            RequestLogRow.route == route,
            RequestLogRow.received_at >= since,
            RequestLogRow.shadow_of.is_(None),
            RequestLogRow.version.in_(list(arms)),
        )
        .order_by(RequestLogRow.id.desc())
        .limit(MAX_ROWS)
    )
    with database.transaction() as session:
        for row, feedback in session.execute(statement):
            arm = arms[row.version]
            arm.requests += 1
            _count(arm, row, feedback)
            if live_eval is not None and row.request_body is not None and sampled(row.request_id, eval_sample):
                verdict = live_eval(_row_dict(row))
                if verdict is not None:
                    arm.eval_scored += 1
                    arm.eval_passed += verdict
    return Window(arms[str(control_version)].data(), arms[str(candidate_version)].data())


def read_arm(database: Database, route: str, version: str, since: datetime, until: datetime | None = None) -> ArmData:
    """One version's data on ``route`` in [since, until): what the drift watch compares with itself."""
    arm = _Arm()
    statement = (
        select(RequestLogRow, FeedbackRow.score)
        .outerjoin(FeedbackRow, FeedbackRow.request_id == RequestLogRow.request_id)
        .where(
            RequestLogRow.route == route,
            RequestLogRow.version == version,
            RequestLogRow.received_at >= since,
            RequestLogRow.shadow_of.is_(None),
        )
        .order_by(RequestLogRow.id.desc())
        .limit(MAX_ROWS)
    )
    if until is not None:
        statement = statement.where(RequestLogRow.received_at < until)
    with database.transaction() as session:
        for row, feedback in session.execute(statement):
            arm.requests += 1
            _count(arm, row, feedback)
    return arm.data()


def served_versions(database: Database, since: datetime) -> list[tuple[str, str]]:
    """The (route, version) pairs that served requests since ``since``."""
    statement = (
        select(RequestLogRow.route, RequestLogRow.version)
        .where(RequestLogRow.received_at >= since, RequestLogRow.shadow_of.is_(None), RequestLogRow.version != "")
        .distinct()
        .limit(1000)
    )
    with database.transaction() as session:
        return [(route, version) for route, version in session.execute(statement)]


def _count(arm: _Arm, row: RequestLogRow, feedback: float | None) -> None:
    assert arm.latency is not None and arm.ttft is not None and arm.tpot is not None
    assert arm.output_tokens is not None and arm.feedback is not None
    if row.status >= 500 or row.status == 0:
        arm.errors += 1
    elif row.status == 200:
        arm.latency.append(row.duration_ms / 1000.0)
        if row.ttft_ms is not None:
            arm.ttft.append(row.ttft_ms / 1000.0)
        if row.tpot_ms is not None:
            arm.tpot.append(row.tpot_ms / 1000.0)
        arm.output_tokens.append(float(row.completion_tokens))
        arm.empty += row.completion_tokens == 0
    if feedback is not None:
        arm.feedback.append(feedback)


def _row_dict(row: RequestLogRow) -> dict[str, Any]:
    return {
        "request_id": row.request_id,
        "status": row.status,
        "stream": row.stream,
        "duration_ms": row.duration_ms,
        "prompt_tokens": row.prompt_tokens,
        "completion_tokens": row.completion_tokens,
        "request_body": row.request_body,
        "response_body": row.response_body,
    }
