"""The stored request log: one row per inference request (metadata always, bodies only when sampled)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, Float, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from modelyard.store.base import Base, UTCDateTime


class RequestLogRow(Base):
    __tablename__ = "request_log"
    # Each index costs ~2 µs a row on the write path (see the migrations): arrival time for queries and retention,
    # request id for feedback and live evals.
    __table_args__ = (
        Index("ix_request_log_received_at", "received_at"),
        Index("ix_request_log_request_id", "request_id"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    request_id: Mapped[str] = mapped_column(String(128))
    trace_id: Mapped[str] = mapped_column(String(32))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())
    endpoint: Mapped[str] = mapped_column(String(16))
    route: Mapped[str] = mapped_column(String(256))
    model: Mapped[str] = mapped_column(String(128))
    version: Mapped[str] = mapped_column(String(16))
    target: Mapped[str] = mapped_column(String(160))
    stream: Mapped[bool] = mapped_column(Boolean)
    status: Mapped[int] = mapped_column(Integer)
    error_type: Mapped[str | None] = mapped_column(String(64), nullable=True)
    duration_ms: Mapped[float] = mapped_column(Float)
    queued_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    ttft_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    tpot_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    prompt_tokens: Mapped[int] = mapped_column(Integer)
    completion_tokens: Mapped[int] = mapped_column(Integer)
    attempts: Mapped[int] = mapped_column(Integer)
    cost_usd: Mapped[float] = mapped_column(Float)
    request_body: Mapped[str | None] = mapped_column(Text, nullable=True)
    response_body: Mapped[str | None] = mapped_column(Text, nullable=True)
    shadow_of: Mapped[str | None] = mapped_column(String(128), nullable=True)  # the primary of a shadow copy
    outputs_match: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    similarity: Mapped[float | None] = mapped_column(Float, nullable=True)
    key_id: Mapped[str | None] = mapped_column(String(32), nullable=True)  # the caller's key, for feedback
