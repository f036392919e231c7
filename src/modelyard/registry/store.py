"""The registry's system of record: every read and write of models, versions, aliases and events.

Each public method is one transaction. Writes that depend on current state (next version number, where an alias
points now) first lock the model's row, so concurrent promotions are applied one after the other and each event
records the true "from" of its move; nothing is ever lost or half-written.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, overload

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from modelyard.audit import log as audit
from modelyard.registry.errors import Conflict, InvalidRequest, NotFound
from modelyard.registry.records import (
    AliasMove,
    AliasRecord,
    EventRecord,
    ModelRecord,
    RegistrySnapshot,
    VersionRecord,
)
from modelyard.registry.references import PRODUCTION, ModelRef, check_alias_name, check_model_name
from modelyard.registry.tables import Alias, ModelVersion, RegisteredModel, RegistryEvent
from modelyard.store.base import utcnow
from modelyard.store.database import Database


@dataclass(frozen=True)
class NewVersion:
    """A version to register: facts measured from the artifact plus the provenance a person declares."""

    model: str
    artifact_path: Path
    sha256: str
    size_bytes: int
    format: str
    quantization: str = ""
    architecture: str = ""
    parameter_count: int | None = None
    context_length: int | None = None
    header: dict[str, Any] = field(default_factory=dict)
    license: str = ""
    base_model: str = ""
    parent: ModelRef | None = None  # a version of this or another model (a fine-tune's base, a re-quantization)
    training_data: tuple[str, ...] = ()
    fine_tuning_data: tuple[str, ...] = ()
    lineage_notes: str = ""
    description: str | None = None  # model-level details, applied when given
    owner: str | None = None
    tags: dict[str, str] | None = None
    alias: str | None = None  # point this alias at the new version in the same transaction


@dataclass(frozen=True)
class ModelDetails:
    """The mutable part of a registered model; ``None`` leaves a field as it is."""

    description: str | None = None
    owner: str | None = None
    tags: dict[str, str] | None = None


PromotionCheck = Callable[[Session, int, str, str, tuple[int, int], tuple[int, int] | None, bool], dict[str, Any]]
"""Judges moving a gated alias inside the move's own transaction: (session, model id, model name, alias, candidate
(row id, number), current (row id, number) or None, force) → details for the event, or raises
:class:`~modelyard.registry.errors.PromotionGateFailed`. The evals concept provides it
(``evals.promotion.check_promotion``); the registry only knows that such a check exists."""


class RegistryStore:
    def __init__(self, database: Database, promotion_check: PromotionCheck) -> None:
        self.database = database
        self._check_promotion = promotion_check

    # -- reads ----------------------------------------------------------------------------------------------

    def revision(self) -> int:
        with self.database.transaction() as session:
            return session.scalar(select(func.coalesce(func.max(RegistryEvent.id), 0))) or 0

    def snapshot(self) -> RegistrySnapshot:
        with self.database.transaction() as session:
            revision = session.scalar(select(func.coalesce(func.max(RegistryEvent.id), 0))) or 0
            models = session.scalars(_model_query()).all()
            return RegistrySnapshot(revision, {m.name: _model_record(m) for m in models})

    def list_models(self) -> list[ModelRecord]:
        with self.database.transaction() as session:
            return [_model_record(m) for m in session.scalars(_model_query()).all()]

    def get_model(self, name: str) -> ModelRecord:
        with self.database.transaction() as session:
            return _model_record(_load_model(session, name))

    def get_version(self, name: str, number: int) -> VersionRecord:
        with self.database.transaction() as session:
            return _version_record(_load_version(session, _load_model(session, name), number))

    def resolve(self, ref: ModelRef) -> VersionRecord:
        """The version a reference means right now (``name`` → production, or the only active version)."""
        model = self.get_model(ref.name)
        if ref.version is not None:
            version = model.version(ref.version)
            if version is None:
                raise NotFound(f"Model '{ref.name}' has no version {ref.version}.", param="version")
            return version
        alias = ref.alias or PRODUCTION
        target = model.alias_map().get(alias)
        if target is None:
            active = model.active_versions()
            if ref.alias is None and len(active) == 1:
                return active[0]
            raise NotFound(f"Model '{ref.name}' has no alias '{alias}'.", param="alias")
        version = model.version(target)
        assert version is not None
        return version

    def find_by_sha256(self, sha256: str) -> VersionRecord | None:
        with self.database.transaction() as session:
            row = session.scalar(select(ModelVersion).where(ModelVersion.sha256 == sha256).options(*_version_loads()))
            return _version_record(row) if row is not None else None

    def events(self, name: str | None = None, limit: int = 100) -> list[EventRecord]:
        with self.database.transaction() as session:
            query = select(RegistryEvent, RegisteredModel.name).join(RegisteredModel)
            if name is not None:
                query = query.where(RegistryEvent.model_id == _load_model(session, name).id)
            rows = session.execute(query.order_by(RegistryEvent.id.desc()).limit(limit)).all()
            return [_event_record(event, model_name) for event, model_name in reversed(rows)]

    # -- writes ---------------------------------------------------------------------------------------------

    def register(self, new: NewVersion, actor: str) -> VersionRecord:
        check_model_name(new.model)
        if new.alias is not None:
            check_alias_name(new.alias)
        existing = self.find_by_sha256(new.sha256)
        if existing is not None:
            raise _duplicate(existing)
        for attempt in range(2):
            try:
                with self.database.transaction() as session:
                    return self._register(session, new, actor)
            except IntegrityError:
                # Lost a race: the same bytes, or the same new model name, were committed by someone else.
                existing = self.find_by_sha256(new.sha256)
                if existing is not None:
                    raise _duplicate(existing) from None
                if attempt == 1:
                    raise
        raise AssertionError("unreachable")

    def _register(self, session: Session, new: NewVersion, actor: str) -> VersionRecord:
        now = utcnow()
        model = _lock_model(session, new.model, missing_ok=True)
        created = model is None
        if model is None:
            model = RegisteredModel(
                name=new.model,
                description=new.description or "",
                owner=new.owner or "",
                tags=dict(new.tags or {}),
                created_by=actor,
                created_at=now,
            )
            session.add(model)
            session.flush()
            _event(session, model, "model_created", actor, now)
        else:
            _update_details(session, model, new, actor, now)
        parent_id = None
        if new.parent is not None:
            parent_id = _resolve_parent(session, new.parent).id
        latest = session.scalar(select(func.max(ModelVersion.number)).where(ModelVersion.model_id == model.id))
        number = (latest or 0) + 1
        version = ModelVersion(
            model_id=model.id,
            number=number,
            artifact_uri=str(new.artifact_path),
            sha256=new.sha256,
            size_bytes=new.size_bytes,
            format=new.format,
            quantization=new.quantization,
            architecture=new.architecture,
            parameter_count=new.parameter_count,
            context_length=new.context_length,
            license=new.license,
            base_model=new.base_model,
            parent_version_id=parent_id,
            training_data=list(new.training_data),
            fine_tuning_data=list(new.fine_tuning_data),
            lineage_notes=new.lineage_notes,
            header=new.header,
            created_by=actor,
            created_at=now,
        )
        session.add(version)
        session.flush()
        _event(session, model, "version_registered", actor, now, version_number=number, detail={"sha256": new.sha256})
        # A model's first version serves its name from the start; later ones wait to be promoted.
        aliases = {new.alias} if new.alias else set()
        if created:
            aliases.add(PRODUCTION)
        for alias in sorted(aliases):
            detail: dict[str, Any] = {}
            if not created:  # a gated alias needs evidence, which a version being registered cannot have yet
                row = _alias_row(session, model, alias)
                current = (row.version.id, row.version.number) if row is not None else None
                detail = self._check_promotion(
                    session, model.id, model.name, alias, (version.id, number), current, False
                )
            _set_alias(session, model, alias, version, actor, now, detail=detail)
        session.flush()
        session.refresh(version, attribute_names=["model", "parent"])
        return _version_record(version)

    def move_alias(
        self,
        name: str,
        alias: str,
        target: int | ModelRef,
        actor: str,
        expected: int | None = None,
        force: bool = False,
        reason: str = "",
    ) -> AliasMove:
        """Point ``alias`` at a version. ``expected`` makes it a compare-and-set: refuse if the alias moved since.

        A gated alias (``production`` once the model declares gates) only moves when the target version's stored
        evidence passes every gate; ``force`` overrides and the event records ``forced: true`` with the failed gates
        (and ``reason``, the operator's stated why, when given).
        """
        check_alias_name(alias)
        with self.database.transaction() as session:
            model = _lock_model(session, name)
            number = _target_number(name, target)
            version = _load_version(session, model, number)
            if version.archived_at is not None:
                raise Conflict(f"Version {number} of '{name}' is archived; an alias cannot point at it.")
            current = _alias_row(session, model, alias)
            current_number = current.version.number if current is not None else None
            if expected is not None and current_number != expected:
                raise Conflict(
                    f"Alias '{alias}' of '{name}' points at {current_number}, not {expected} as expected: "
                    "someone else moved it. Re-read and retry."
                )
            current_pair = (current.version.id, current_number) if current is not None and current_number else None
            detail = self._check_promotion(
                session, model.id, model.name, alias, (version.id, version.number), current_pair, force
            )
            if detail.get("forced") and reason:
                detail = {**detail, "reason": reason}
            return _set_alias(session, model, alias, version, actor, utcnow(), detail=detail)

    def rollback(self, name: str, alias: str, actor: str) -> AliasMove:
        """Move ``alias`` back to the version it pointed at before its current one (undoing the last move)."""
        check_alias_name(alias)
        with self.database.transaction() as session:
            model = _lock_model(session, name)
            current = _alias_row(session, model, alias)
            if current is None:
                raise NotFound(f"Model '{name}' has no alias '{alias}' to roll back.", param="alias")
            last_move = session.scalar(
                select(RegistryEvent)
                .where(
                    RegistryEvent.model_id == model.id,
                    RegistryEvent.kind == "alias_moved",
                    RegistryEvent.alias == alias,
                )
                .order_by(RegistryEvent.id.desc())
                .limit(1)
            )
            if last_move is None or last_move.from_version is None:
                raise Conflict(f"Alias '{alias}' of '{name}' has no earlier version to roll back to.")
            previous = _load_version(session, model, last_move.from_version)
            if previous.archived_at is not None:
                raise Conflict(
                    f"Cannot roll '{alias}' of '{name}' back to version {previous.number}: it has been archived."
                )
            return _set_alias(session, model, alias, previous, actor, utcnow(), detail={"rollback": True})

    def remove_alias(self, name: str, alias: str, actor: str) -> EventRecord:
        with self.database.transaction() as session:
            model = _lock_model(session, name)
            current = _alias_row(session, model, alias)
            if current is None:
                raise NotFound(f"Model '{name}' has no alias '{alias}'.", param="alias")
            number = current.version.number
            session.delete(current)
            event = _event(session, model, "alias_removed", actor, utcnow(), alias=alias, from_version=number)
            return _event_record(event, model.name)

    def archive(self, name: str, number: int, actor: str) -> VersionRecord:
        """Hide a version from serving and listings; its record and history stay. Archiving twice is a no-op."""
        with self.database.transaction() as session:
            model = _lock_model(session, name)
            version = _load_version(session, model, number)
            pointing = [a.name for a in session.scalars(select(Alias).where(Alias.version_id == version.id))]
            if pointing:
                raise Conflict(
                    f"Version {number} of '{name}' is still the target of alias(es) {', '.join(sorted(pointing))}; "
                    "move them first."
                )
            if version.archived_at is None:
                now = utcnow()
                version.archived_at = now
                version.archived_by = actor
                _event(session, model, "version_archived", actor, now, version_number=number)
            session.flush()
            return _version_record(version)

    def update_model(self, name: str, details: ModelDetails, actor: str) -> ModelRecord:
        """Change a model's description, owner or tags (versions never change); recorded as ``model_updated``."""
        with self.database.transaction() as session:
            model = _lock_model(session, name)
            _update_details(session, model, details, actor, utcnow())
        return self.get_model(name)

    def record_integrity_failure(self, name: str, number: int, error: str, actor: str) -> None:
        with self.database.transaction() as session:
            model = _load_model(session, name)
            _event(session, model, "integrity_failed", actor, utcnow(), version_number=number, detail={"error": error})


# -- helpers ----------------------------------------------------------------------------------------------------


def _version_loads() -> tuple[Any, ...]:
    return (selectinload(ModelVersion.model), selectinload(ModelVersion.parent).selectinload(ModelVersion.model))


def _model_query() -> Any:
    return (
        select(RegisteredModel)
        .options(
            selectinload(RegisteredModel.versions).options(*_version_loads()),
            selectinload(RegisteredModel.aliases).selectinload(Alias.version),
        )
        .order_by(RegisteredModel.name)
    )


def _load_model(session: Session, name: str) -> RegisteredModel:
    model = session.scalars(_model_query().where(RegisteredModel.name == name)).first()
    if model is None:
        raise NotFound(f"No registered model named '{name}'.", param="model")
    return model


@overload
def _lock_model(session: Session, name: str, missing_ok: Literal[False] = False) -> RegisteredModel: ...
@overload
def _lock_model(session: Session, name: str, missing_ok: bool) -> RegisteredModel | None: ...
def _lock_model(session: Session, name: str, missing_ok: bool = False) -> RegisteredModel | None:
    model = session.scalar(select(RegisteredModel).where(RegisteredModel.name == name).with_for_update())
    if model is None and not missing_ok:
        raise NotFound(f"No registered model named '{name}'.", param="model")
    return model


def _load_version(session: Session, model: RegisteredModel, number: int) -> ModelVersion:
    version = session.scalar(
        select(ModelVersion).where(ModelVersion.model_id == model.id, ModelVersion.number == number)
    )
    if version is None:
        raise NotFound(f"Model '{model.name}' has no version {number}.", param="version")
    return version


def _resolve_parent(session: Session, ref: ModelRef) -> ModelVersion:
    model = _load_model(session, ref.name)
    if ref.version is not None:
        return _load_version(session, model, ref.version)
    alias = session.scalar(select(Alias).where(Alias.model_id == model.id, Alias.name == (ref.alias or PRODUCTION)))
    if alias is None:
        raise NotFound(f"Parent '{ref}' does not name a version.", param="parent")
    return alias.version


def _target_number(name: str, target: int | ModelRef) -> int:
    if isinstance(target, int):
        return target
    if target.name != name:
        raise InvalidRequest(
            f"An alias of '{name}' can only point at a version of '{name}', not at '{target}'.", param="version"
        )
    if target.version is None:
        raise InvalidRequest(f"'{target}' does not name a version number.", param="version")
    return target.version


def _alias_row(session: Session, model: RegisteredModel, alias: str) -> Alias | None:
    return session.scalar(select(Alias).where(Alias.model_id == model.id, Alias.name == alias))


def _set_alias(
    session: Session,
    model: RegisteredModel,
    alias: str,
    version: ModelVersion,
    actor: str,
    now: Any,
    detail: dict[str, Any],
) -> AliasMove:
    row = _alias_row(session, model, alias)
    previous = row.version.number if row is not None else None
    if row is None:
        row = Alias(model_id=model.id, name=alias, version_id=version.id, updated_by=actor, updated_at=now)
        session.add(row)
    else:
        row.version_id = version.id
        row.updated_by = actor
        row.updated_at = now
    event = _event(
        session,
        model,
        "alias_moved",
        actor,
        now,
        alias=alias,
        from_version=previous,
        to_version=version.number,
        detail=detail,
    )
    return AliasMove(model.name, alias, previous, version.number, event.id)


def _update_details(session: Session, model: RegisteredModel, new: Any, actor: str, now: Any) -> None:
    """Apply the non-None ``description``/``owner``/``tags`` of ``new``; one ``model_updated`` event if any changed."""
    changes: dict[str, Any] = {}
    for field_name in ("description", "owner", "tags"):
        value = getattr(new, field_name)
        if value is not None and value != getattr(model, field_name):
            changes[field_name] = {"from": getattr(model, field_name), "to": value}
            setattr(model, field_name, value)
    if changes:
        _event(session, model, "model_updated", actor, now, detail=changes)


def _event(session: Session, model: RegisteredModel, kind: str, actor: str, now: Any, **fields: Any) -> RegistryEvent:
    fields.setdefault("detail", {})
    event = RegistryEvent(model_id=model.id, kind=kind, actor=actor, at=now, **fields)
    session.add(event)
    session.flush()
    # Same transaction: the registry change and its tamper-evident audit record commit together or not at all.
    before, after = audit.registry_change(kind, fields)
    audit.append(session, actor, f"registry.{kind}", model.name, before, after)
    return event


def _duplicate(existing: VersionRecord) -> Conflict:
    return Conflict(
        f"These bytes are already registered as {existing.key} (sha256 {existing.sha256}); "
        "a version is registered once. Give it an alias instead."
    )


def _version_record(row: ModelVersion) -> VersionRecord:
    parent = f"{row.parent.model.name}:{row.parent.number}" if row.parent is not None else None
    return VersionRecord(
        model=row.model.name,
        number=row.number,
        artifact_uri=row.artifact_uri,
        sha256=row.sha256,
        size_bytes=row.size_bytes,
        format=row.format,
        quantization=row.quantization,
        architecture=row.architecture,
        parameter_count=row.parameter_count,
        context_length=row.context_length,
        license=row.license,
        base_model=row.base_model,
        parent=parent,
        training_data=tuple(row.training_data or ()),
        fine_tuning_data=tuple(row.fine_tuning_data or ()),
        lineage_notes=row.lineage_notes,
        header=dict(row.header or {}),
        created_by=row.created_by,
        created_at=row.created_at,
        archived_at=row.archived_at,
        archived_by=row.archived_by,
    )


def _model_record(row: RegisteredModel) -> ModelRecord:
    return ModelRecord(
        name=row.name,
        description=row.description,
        owner=row.owner,
        tags=dict(row.tags or {}),
        created_by=row.created_by,
        created_at=row.created_at,
        versions=tuple(_version_record(v) for v in row.versions),
        aliases=tuple(AliasRecord(a.name, a.version.number, a.updated_by, a.updated_at) for a in row.aliases),
    )


def _event_record(row: RegistryEvent, model_name: str) -> EventRecord:
    return EventRecord(
        id=row.id,
        model=model_name,
        kind=row.kind,
        version=row.version_number,
        alias=row.alias,
        from_version=row.from_version,
        to_version=row.to_version,
        actor=row.actor,
        at=row.at,
        detail=dict(row.detail or {}),
    )
