"""Experiments in the shared database: created (checked against the registry and against other experiments and
rollouts on the route), listed, reported on, stopped — each change audited in the same transaction."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from modelyard.audit.log import append as audit_append
from modelyard.deploy.rollout_split import TrafficSplit
from modelyard.registry.errors import NotFound
from modelyard.registry.store import RegistryStore
from modelyard.rollouts.experiment import ExperimentSpec, parse_experiment, report
from modelyard.rollouts.store import ACTIVE, RolloutConflict
from modelyard.rollouts.tables import ExperimentRow, RolloutRow
from modelyard.rollouts.window import read_arm
from modelyard.store.database import Database


class ExperimentNotFound(Exception):
    def __init__(self, name: str) -> None:
        super().__init__(f"No experiment named '{name}'.")
        self.name = name


@dataclass(frozen=True)
class Experiment:
    spec: ExperimentSpec
    state: str
    created_by: str
    created_at: datetime
    updated_at: datetime

    def split(self) -> TrafficSplit | None:
        if self.state != "running":
            return None
        spec = self.spec
        first, *rest = spec.treatments
        others = tuple((arm.version, share) for arm, share in zip(rest, spec.allocation[2:], strict=True))
        return TrafficSplit(
            spec.route, spec.control.model, spec.control.version, first.version, spec.allocation[1], spec.sticky,
            others,
        )  # fmt: skip

    def to_json(self) -> dict[str, Any]:
        return {
            "object": "experiment",
            **self.spec.to_json(),
            "state": self.state,
            "created_by": self.created_by,
            "created_at": self.created_at.isoformat().replace("+00:00", "Z"),
            "updated_at": self.updated_at.isoformat().replace("+00:00", "Z"),
        }


class ExperimentStore:
    def __init__(self, database: Database) -> None:
        self.database = database

    def create(self, spec: ExperimentSpec, registry: RegistryStore, actor: str) -> Experiment:
        for arm in (spec.control, *spec.treatments):
            version = registry.get_version(arm.model, arm.version)  # NotFound names it
            if version.archived_at is not None:
                raise RolloutConflict(f"Version {arm} is archived.", "treatments")
        now = datetime.now(UTC)
        with self.database.transaction() as session:
            if session.get(ExperimentRow, spec.name) is not None:
                raise RolloutConflict(f"An experiment named '{spec.name}' already exists.", "name")
            running = session.execute(
                select(ExperimentRow.name).where(ExperimentRow.route == spec.route, ExperimentRow.state == "running")
            ).scalar_one_or_none()
            rollout = session.execute(
                select(RolloutRow.id).where(RolloutRow.route == spec.route, RolloutRow.state.in_(ACTIVE))
            ).scalar_one_or_none()
            if running is not None or rollout is not None:
                other = f"experiment '{running}'" if running is not None else f"rollout {rollout}"
                raise RolloutConflict(
                    f"Route '{spec.route}' already has a running {other}: experiments on one route would overlap.",
                    "route",
                )
            row = ExperimentRow(
                name=spec.name, route=spec.route, state="running", definition=spec.to_json(), created_by=actor,
                created_at=now, updated_at=now,
            )  # fmt: skip
            session.add(row)
            session.flush()
            experiment = _experiment(row)
            audit_append(session, actor, "experiment.create", f"experiment/{spec.name}", None, experiment.to_json())
            return experiment

    def get(self, name: str) -> Experiment:
        with self.database.transaction() as session:
            row = session.get(ExperimentRow, name)
            if row is None:
                raise ExperimentNotFound(name)
            return _experiment(row)

    def find(self, running_only: bool = False) -> list[Experiment]:
        statement = select(ExperimentRow).order_by(ExperimentRow.created_at.desc())
        if running_only:
            statement = statement.where(ExperimentRow.state == "running")
        with self.database.transaction() as session:
            return [_experiment(row) for row in session.execute(statement).scalars()]

    def stop(self, name: str, actor: str) -> Experiment:
        with self.database.transaction() as session:
            row = session.get(ExperimentRow, name, with_for_update=True)
            if row is None:
                raise ExperimentNotFound(name)
            if row.state != "running":
                raise RolloutConflict(f"Experiment '{name}' is already {row.state}.", "state")
            before = _experiment(row).to_json()
            row.state, row.updated_at = "stopped", datetime.now(UTC)
            experiment = _experiment(row)
            audit_append(session, actor, "experiment.stop", f"experiment/{name}", before, experiment.to_json())
            return experiment

    def splits(self) -> tuple[TrafficSplit, ...]:
        found = (e.split() for e in self.find(running_only=True))
        return tuple(s for s in found if s is not None)

    def report(self, name: str, now: datetime | None = None) -> dict[str, Any]:
        """The experiment with every treatment judged against the control since it started."""
        experiment = self.get(name)
        spec = experiment.spec
        now = now or datetime.now(UTC)
        until = now if experiment.state == "running" else experiment.updated_at
        control = read_arm(self.database, spec.route, str(spec.control.version), experiment.created_at, until)
        treatments = [
            read_arm(self.database, spec.route, str(t.version), experiment.created_at, until) for t in spec.treatments
        ]
        reports, srm = report(spec, control, treatments, experiment.created_at, until)
        return {
            **experiment.to_json(),
            "requests": {str(spec.control): control.requests, **{str(t): d.requests for t, d in
                                                                 zip(spec.treatments, treatments, strict=True)}},
            "results": [r.to_json() for r in reports],
            "sample_ratio": srm.as_dict(),
        }  # fmt: skip


def _experiment(row: ExperimentRow) -> Experiment:
    try:
        spec = parse_experiment(row.definition)
    except Exception as exc:  # pragma: no cover - stored definitions were validated when created
        raise NotFound(f"experiment '{row.name}' has an unreadable definition: {exc}") from None
    return Experiment(spec, row.state, row.created_by, row.created_at, row.updated_at)
