"""Rollouts and their decisions in the shared database: the state a restarted or another gateway resumes from.

Every state change is one transaction that writes the decision (with the numbers behind it), the rollout's new
state and an audit record together, so the history, the rollout and the audit log never disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from modelyard.audit.log import append as audit_append
from modelyard.deploy.rollout_split import TrafficSplit
from modelyard.rollouts.plan import RolloutPlan, plan_from_json
from modelyard.rollouts.tables import ExperimentRow, RolloutDecisionRow, RolloutRow
from modelyard.store.database import Database

ACTIVE = ("running", "paused")
FINISHED = ("promoted", "rolled_back", "aborted")


class RolloutNotFound(Exception):
    def __init__(self, rollout_id: int) -> None:
        super().__init__(f"No rollout with id {rollout_id}.")
        self.rollout_id = rollout_id


class RolloutConflict(Exception):
    """A rollout that cannot start or change as asked (another one on the route, a finished one, ...)."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


@dataclass(frozen=True)
class Rollout:
    id: int
    route: str
    model: str
    control_version: int
    candidate_version: int
    steps: tuple[int, ...]
    step: int
    state: str
    plan: RolloutPlan
    reason: str
    created_by: str
    started_at: datetime
    step_started_at: datetime
    updated_at: datetime

    @property
    def share(self) -> int:
        return self.steps[self.step]

    @property
    def active(self) -> bool:
        return self.state in ACTIVE

    def split(self) -> TrafficSplit | None:
        if not self.active or not 0 < self.share < 100:
            return None
        return TrafficSplit(
            self.route, self.model, self.control_version, self.candidate_version, float(self.share), self.plan.sticky
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "object": "rollout",
            "id": self.id,
            "route": self.route,
            "model": self.model,
            "control_version": self.control_version,
            "candidate_version": self.candidate_version,
            "steps": list(self.steps),
            "step": self.step,
            "share": self.share,
            "state": self.state,
            "reason": self.reason,
            "plan": self.plan.to_json(),
            "created_by": self.created_by,
            "started_at": _iso(self.started_at),
            "step_started_at": _iso(self.step_started_at),
            "updated_at": _iso(self.updated_at),
        }


@dataclass(frozen=True)
class DecisionRecord:
    id: int
    rollout_id: int
    at: datetime
    step: int
    share: int
    action: str
    reason: str
    numbers: dict[str, Any]
    actor: str

    def to_json(self) -> dict[str, Any]:
        return {
            "object": "rollout.decision",
            "id": self.id,
            "rollout_id": self.rollout_id,
            "at": _iso(self.at),
            "step": self.step,
            "share": self.share,
            "action": self.action,
            "reason": self.reason,
            "numbers": self.numbers,
            "actor": self.actor,
        }


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


class RolloutStore:
    def __init__(self, database: Database) -> None:
        self.database = database

    def start(self, route: str, model: str, control: int, candidate: int, plan: RolloutPlan, actor: str) -> Rollout:
        if control == candidate:
            raise RolloutConflict(f"Version {candidate} of '{model}' is already what '{route}' serves.", "candidate")
        now = datetime.now(UTC)
        with self.database.transaction() as session:
            busy = session.execute(
                select(RolloutRow.id).where(RolloutRow.route == route, RolloutRow.state.in_(ACTIVE))
            ).scalar_one_or_none()
            if busy is not None:
                raise RolloutConflict(
                    f"Route '{route}' already has an active rollout (id {busy}); finish or abort it first.", "route"
                )
            experiment = session.execute(
                select(ExperimentRow.name).where(ExperimentRow.route == route, ExperimentRow.state == "running")
            ).scalar_one_or_none()
            if experiment is not None:
                raise RolloutConflict(
                    f"Route '{route}' has a running experiment '{experiment}'; stop it before a rollout.", "route"
                )
            row = RolloutRow(
                route=route,
                model=model,
                control_version=control,
                candidate_version=candidate,
                steps=list(plan.steps),
                step=0,
                state="running",
                plan=plan.to_json(),
                reason="started",
                created_by=actor,
                started_at=now,
                step_started_at=now,
                updated_at=now,
            )
            session.add(row)
            session.flush()
            rollout = _rollout(row)
            _decision(session, row, now, "start", f"started at {plan.steps[0]} %", {"plan": plan.to_json()}, actor)
            audit_append(session, actor, "rollout.start", f"rollout/{row.id}", None, rollout.to_json())
            return rollout

    def get(self, rollout_id: int) -> Rollout:
        with self.database.transaction() as session:
            row = session.get(RolloutRow, rollout_id)
            if row is None:
                raise RolloutNotFound(rollout_id)
            return _rollout(row)

    def find(self, active_only: bool = False, route: str | None = None, limit: int = 100) -> list[Rollout]:
        statement = select(RolloutRow).order_by(RolloutRow.id.desc()).limit(limit)
        if active_only:
            statement = statement.where(RolloutRow.state.in_(ACTIVE))
        if route is not None:
            statement = statement.where(RolloutRow.route == route)
        with self.database.transaction() as session:
            return [_rollout(row) for row in session.execute(statement).scalars()]

    def decisions(self, rollout_id: int) -> list[DecisionRecord]:
        self.get(rollout_id)
        statement = (
            select(RolloutDecisionRow)
            .where(RolloutDecisionRow.rollout_id == rollout_id)
            .order_by(RolloutDecisionRow.id)
        )
        with self.database.transaction() as session:
            return [_record(row) for row in session.execute(statement).scalars()]

    def splits(self) -> tuple[TrafficSplit, ...]:
        """What every gateway lays over its routes: the active rollouts' current shares."""
        found = (rollout.split() for rollout in self.find(active_only=True, limit=1000))
        return tuple(sorted((s for s in found if s is not None), key=lambda s: s.route))

    def transition(
        self,
        rollout_id: int,
        action: str,
        reason: str,
        numbers: dict[str, Any],
        actor: str,
        state: str | None = None,
        step: int | None = None,
        expect: tuple[str, ...] = ACTIVE,
        new_window: bool = False,
    ) -> tuple[Rollout, DecisionRecord]:
        """Record a decision and apply it: a new state and/or step, the decision row and the audit record, in one
        transaction. ``expect``: the states the rollout must be in (else :class:`RolloutConflict`);
        ``new_window``: judge from now on (a resumed step does not count the requests of its pause)."""
        now = datetime.now(UTC)
        with self.database.transaction() as session:
            row = session.get(RolloutRow, rollout_id, with_for_update=True)
            if row is None:
                raise RolloutNotFound(rollout_id)
            if row.state not in expect:
                raise RolloutConflict(f"Rollout {rollout_id} is {row.state}; it cannot {action}.", "state")
            before = _rollout(row).to_json()
            if (step is not None and step != row.step) or new_window:
                row.step, row.step_started_at = row.step if step is None else step, now
            if state is not None:
                row.state = state
            row.reason, row.updated_at = reason, now
            decision = _decision(session, row, now, action, reason, numbers, actor)
            rollout = _rollout(row)
            audit_append(session, actor, f"rollout.{action}", f"rollout/{row.id}", before, rollout.to_json())
            return rollout, decision


def _decision(
    session: Any, row: RolloutRow, now: datetime, action: str, reason: str, numbers: dict[str, Any], actor: str
) -> DecisionRecord:
    decision = RolloutDecisionRow(
        rollout_id=row.id,
        at=now,
        step=row.step,
        share=row.steps[row.step],
        action=action,
        reason=reason,
        numbers=numbers,
        actor=actor,
    )
    session.add(decision)
    session.flush()
    return _record(decision)


def _rollout(row: RolloutRow) -> Rollout:
    return Rollout(
        id=row.id,
        route=row.route,
        model=row.model,
        control_version=row.control_version,
        candidate_version=row.candidate_version,
        steps=tuple(row.steps),
        step=row.step,
        state=row.state,
        plan=plan_from_json(row.plan),
        reason=row.reason,
        created_by=row.created_by,
        started_at=row.started_at,
        step_started_at=row.step_started_at,
        updated_at=row.updated_at,
    )


def _record(row: RolloutDecisionRow) -> DecisionRecord:
    return DecisionRecord(
        row.id, row.rollout_id, row.at, row.step, row.share, row.action, row.reason, row.numbers, row.actor
    )
