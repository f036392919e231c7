"""Tables of the security layer: API keys, the revision counter gateways poll, per-key spend and the guardrail
configuration (the audit log's tables are ``audit/tables.py``).

The key table never holds a secret: only its keyed hash (HMAC-SHA256 with the server pepper) and a short display
prefix. ``security_state`` is one row whose ``revision`` grows with every key or guardrail change, so a replica
learns about a revocation with one cheap primary-key read.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Float, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from modelyard.store.base import Base, UTCDateTime, utcnow


class ApiKeyRow(Base):
    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # public id, e.g. key_3f9a1c2b
    name: Mapped[str] = mapped_column(String(128))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    scopes: Mapped[list[str]] = mapped_column(JSON, default=list)
    models: Mapped[list[str]] = mapped_column(JSON, default=list)  # allowed route globs; empty: all
    regions: Mapped[list[str]] = mapped_column(JSON, default=list)  # allowed regions; empty: all
    limits: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # rpm, tpm, concurrency, budgets
    created_by: Mapped[str] = mapped_column(String(256))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    revoked_by: Mapped[str | None] = mapped_column(String(256), nullable=True)


class SecurityState(Base):
    __tablename__ = "security_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)  # always 1
    revision: Mapped[int] = mapped_column(BigInteger, default=0)
    guardrails: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)  # set by PUT /admin/guardrails


class KeySpendRow(Base):
    __tablename__ = "key_spend"
    __table_args__ = (UniqueConstraint("key_id", "period", name="uq_key_spend_key_id"),)  # as migration 0007 named it

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key_id: Mapped[str] = mapped_column(String(32))
    period: Mapped[str] = mapped_column(String(16))  # "d2026-11-23" or "m2026-11"
    tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    cost_usd: Mapped[float] = mapped_column(Float, default=0.0)
    requests: Mapped[int] = mapped_column(BigInteger, default=0)
