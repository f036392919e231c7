"""Plain, immutable views of registry rows: what the store returns and what serving, CLI and API consume.

Detached from SQLAlchemy sessions on purpose, so a snapshot can live in the gateway's memory and keep serving
while the database is unreachable.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from modelyard.registry.references import PRODUCTION


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


@dataclass(frozen=True)
class VersionRecord:
    model: str
    number: int
    artifact_uri: str
    sha256: str
    size_bytes: int
    format: str
    quantization: str
    architecture: str
    parameter_count: int | None
    context_length: int | None
    license: str
    base_model: str
    parent: str | None  # "name:version" of the version this one was derived from
    training_data: tuple[str, ...]
    fine_tuning_data: tuple[str, ...]
    lineage_notes: str
    header: Mapping[str, Any]
    created_by: str
    created_at: datetime
    archived_at: datetime | None = None
    archived_by: str | None = None

    @property
    def key(self) -> str:
        return f"{self.model}:{self.number}"

    @property
    def archived(self) -> bool:
        return self.archived_at is not None

    @property
    def artifact_path(self) -> Path:
        return Path(self.artifact_uri.removeprefix("file://"))

    @property
    def has_chat_template(self) -> bool:
        return bool(self.header.get("has_chat_template"))

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["training_data"] = list(self.training_data)
        data["fine_tuning_data"] = list(self.fine_tuning_data)
        data["header"] = dict(self.header)
        data["created_at"] = _iso(self.created_at)
        data["archived_at"] = _iso(self.archived_at)
        data["key"] = self.key
        return data


@dataclass(frozen=True)
class AliasRecord:
    name: str
    version: int
    updated_by: str
    updated_at: datetime

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "updated_at": _iso(self.updated_at)}


@dataclass(frozen=True)
class ModelRecord:
    name: str
    description: str
    owner: str
    tags: Mapping[str, str]
    created_by: str
    created_at: datetime
    versions: tuple[VersionRecord, ...] = ()
    aliases: tuple[AliasRecord, ...] = ()

    def alias_map(self) -> dict[str, int]:
        return {alias.name: alias.version for alias in self.aliases}

    def version(self, number: int) -> VersionRecord | None:
        return next((v for v in self.versions if v.number == number), None)

    def active_versions(self) -> tuple[VersionRecord, ...]:
        return tuple(v for v in self.versions if not v.archived)

    @property
    def production(self) -> int | None:
        return self.alias_map().get(PRODUCTION)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "owner": self.owner,
            "tags": dict(self.tags),
            "created_by": self.created_by,
            "created_at": _iso(self.created_at),
            "aliases": {alias.name: alias.version for alias in self.aliases},
            "versions": [v.to_json() for v in self.versions],
        }


@dataclass(frozen=True)
class EventRecord:
    id: int
    model: str
    kind: str
    version: int | None
    alias: str | None
    from_version: int | None
    to_version: int | None
    actor: str
    at: datetime
    detail: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "detail": dict(self.detail), "at": _iso(self.at)}

    def describe(self) -> str:
        if self.kind == "alias_moved":
            origin = f"{self.from_version}" if self.from_version is not None else "(none)"
            verb = "rolled back" if self.detail.get("rollback") else "moved"
            text = f"alias '{self.alias}' {verb} {origin} → {self.to_version}"
            if self.detail.get("forced"):
                failed = ", ".join(g.get("gate", "?") for g in self.detail.get("failed_gates", []))
                text += f" (FORCED past failed gates: {failed})"
                if self.detail.get("reason"):
                    text += f"; reason: {self.detail['reason']}"
            elif self.detail.get("gates"):
                text += f" (passed {len(self.detail['gates'])} gate(s))"
            return text
        if self.kind == "alias_removed":
            return f"alias '{self.alias}' removed (was {self.from_version})"
        if self.kind == "version_registered":
            return f"version {self.version} registered"
        if self.kind == "version_archived":
            return f"version {self.version} archived"
        if self.kind == "integrity_failed":
            return f"version {self.version} refused: {self.detail.get('error', 'integrity check failed')}"
        if self.kind == "gates_set":
            gates = [g.get("name") or g.get("type", "?") for g in self.detail.get("gates", [])]
            return "promotion gates set: " + (", ".join(gates) if gates else "(none)")
        if self.kind == "model_created":
            return "model created"
        if self.kind == "model_updated":
            return "model details updated: " + ", ".join(sorted(self.detail))
        return self.kind


@dataclass(frozen=True)
class AliasMove:
    model: str
    alias: str
    from_version: int | None
    to_version: int
    event_id: int

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class RegistrySnapshot:
    """Everything serving needs, read in one transaction. ``revision`` is the newest event id."""

    revision: int
    models: Mapping[str, ModelRecord]
