"""The registry's tables.

Model versions are immutable: only ``archived_at``/``archived_by`` may change after insert, and the migration
installs a database trigger that rejects any other update, so not even a hand-written SQL statement can rewrite
what a version was. Events are append-only the same way.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from modelyard.store.base import Base, UTCDateTime, utcnow


class RegisteredModel(Base):
    __tablename__ = "registered_models"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    owner: Mapped[str] = mapped_column(String(256), default="")
    tags: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    created_by: Mapped[str] = mapped_column(String(256))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    versions: Mapped[list[ModelVersion]] = relationship(
        back_populates="model", order_by="ModelVersion.number", foreign_keys="ModelVersion.model_id"
    )
    aliases: Mapped[list[Alias]] = relationship(back_populates="model", order_by="Alias.name")


class ModelVersion(Base):
    __tablename__ = "model_versions"
    __table_args__ = (UniqueConstraint("model_id", "number"), UniqueConstraint("sha256"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("registered_models.id"))
    number: Mapped[int] = mapped_column(Integer)
    artifact_uri: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    format: Mapped[str] = mapped_column(String(32))
    quantization: Mapped[str] = mapped_column(String(64), default="")
    architecture: Mapped[str] = mapped_column(String(64), default="")
    parameter_count: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    context_length: Mapped[int | None] = mapped_column(Integer, nullable=True)
    license: Mapped[str] = mapped_column(String(256), default="")
    base_model: Mapped[str] = mapped_column(String(256), default="")
    parent_version_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id"), nullable=True)
    training_data: Mapped[list[str]] = mapped_column(JSON, default=list)
    fine_tuning_data: Mapped[list[str]] = mapped_column(JSON, default=list)
    lineage_notes: Mapped[str] = mapped_column(Text, default="")
    header: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # selected GGUF header facts
    created_by: Mapped[str] = mapped_column(String(256))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    archived_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    archived_by: Mapped[str | None] = mapped_column(String(256), nullable=True)

    model: Mapped[RegisteredModel] = relationship(back_populates="versions", foreign_keys=[model_id])
    parent: Mapped[ModelVersion | None] = relationship(remote_side=[id], foreign_keys=[parent_version_id])


class Alias(Base):
    __tablename__ = "model_aliases"
    __table_args__ = (UniqueConstraint("model_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("registered_models.id"))
    name: Mapped[str] = mapped_column(String(64))
    version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"))
    updated_by: Mapped[str] = mapped_column(String(256))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    model: Mapped[RegisteredModel] = relationship(back_populates="aliases")
    version: Mapped[ModelVersion] = relationship()


class RegistryEvent(Base):
    """Append-only history. Its highest id doubles as the registry's revision, which gateways poll."""

    __tablename__ = "registry_events"
    __table_args__ = (Index("ix_registry_events_model_id_id", "model_id", "id"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("registered_models.id"))
    kind: Mapped[str] = mapped_column(String(32))
    version_number: Mapped[int | None] = mapped_column(Integer, nullable=True)
    alias: Mapped[str | None] = mapped_column(String(64), nullable=True)
    from_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    to_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    actor: Mapped[str] = mapped_column(String(256))
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
