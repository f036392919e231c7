"""Tables for evaluation evidence, tied to registry model versions.

Runs, case results and quant reports are insert-only: a run is written in one transaction after it finished (or
was aborted), and the migration installs triggers that refuse any later UPDATE or DELETE, so the evidence a gate
relied on cannot be edited afterwards. Gates are the one mutable thing (a model's current policy); each change is
also a registry event.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, Float, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from modelyard.store.base import Base, UTCDateTime, utcnow

_BIG_ID = BigInteger().with_variant(Integer, "sqlite")


class EvalRun(Base):
    __tablename__ = "eval_runs"

    id: Mapped[int] = mapped_column(_BIG_ID, primary_key=True)
    run_id: Mapped[str] = mapped_column(String(32), unique=True)
    model_version_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id"), nullable=True, index=True)
    suite: Mapped[str] = mapped_column(String(128), index=True)
    suite_sha256: Mapped[str] = mapped_column(String(64))
    dataset_sha256: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(256))
    gateway_url: Mapped[str] = mapped_column(String(512))
    status: Mapped[str] = mapped_column(String(16))  # complete | aborted
    total: Mapped[int] = mapped_column(Integer)
    passed: Mapped[int] = mapped_column(Integer)
    failed: Mapped[int] = mapped_column(Integer)
    errors: Mapped[int] = mapped_column(Integer)
    pass_rate: Mapped[float] = mapped_column(Float)
    pass_threshold: Mapped[float] = mapped_column(Float)
    threshold_met: Mapped[bool] = mapped_column(Boolean)
    temperature: Mapped[float] = mapped_column(Float)
    seed: Mapped[int | None] = mapped_column(Integer, nullable=True)
    cached_from: Mapped[str | None] = mapped_column(String(32), nullable=True)
    abort_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    summary: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    report_path: Mapped[str] = mapped_column(Text, default="")
    created_by: Mapped[str] = mapped_column(String(256))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    finished_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class EvalCaseResult(Base):
    __tablename__ = "eval_case_results"

    id: Mapped[int] = mapped_column(_BIG_ID, primary_key=True)
    run_pk: Mapped[int] = mapped_column(ForeignKey("eval_runs.id"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    case_id: Mapped[str] = mapped_column(String(256))
    request: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    expected: Mapped[Any] = mapped_column(JSON, nullable=True)
    case_metadata: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    output: Mapped[str | None] = mapped_column(Text, nullable=True)
    passed: Mapped[bool] = mapped_column(Boolean)
    score: Mapped[float] = mapped_column(Float)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    assertions: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    latency_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    prompt_tokens: Mapped[int | None] = mapped_column(Integer, nullable=True)
    completion_tokens: Mapped[int | None] = mapped_column(Integer, nullable=True)
    answered_by: Mapped[str] = mapped_column(String(160), default="")
    attempts: Mapped[int] = mapped_column(Integer, default=1)


class QuantReport(Base):
    __tablename__ = "quant_reports"

    id: Mapped[int] = mapped_column(_BIG_ID, primary_key=True)
    report_id: Mapped[str] = mapped_column(String(32), unique=True)
    candidate_version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"), index=True)
    base_version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"))
    text_path: Mapped[str] = mapped_column(Text)
    text_sha256: Mapped[str] = mapped_column(String(64))
    ctx_size: Mapped[int] = mapped_column(Integer)
    chunks: Mapped[int] = mapped_column(Integer)
    ppl_base: Mapped[float] = mapped_column(Float)
    ppl_candidate: Mapped[float] = mapped_column(Float)
    ppl_ratio: Mapped[float] = mapped_column(Float)
    kld_mean: Mapped[float] = mapped_column(Float)
    kld_p99: Mapped[float] = mapped_column(Float)
    top_token_agreement: Mapped[float] = mapped_column(Float)
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_by: Mapped[str] = mapped_column(String(256))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ModelGates(Base):
    """A model's promotion policy: the gates moving its ``production`` alias must pass."""

    __tablename__ = "model_gates"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("registered_models.id"), unique=True)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    updated_by: Mapped[str] = mapped_column(String(256))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
