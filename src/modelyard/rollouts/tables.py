"""The experiment engine's tables: feedback on served requests, experiments, rollouts and their decisions.

Feedback is keyed by the request id the gateway answered with (``x-request-id``), so a second rating of the same
request replaces the first. It copies the route, model version and target of the request-log row it rates, so
that it joins the arm that served it without a join on the (large) request log.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Float, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from modelyard.store.base import Base, UTCDateTime


class FeedbackRow(Base):
    __tablename__ = "feedback"
    __table_args__ = (Index("ix_feedback_updated_at", "updated_at"),)

    request_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    key_id: Mapped[str] = mapped_column(String(32))  # the key that rated it ("" when auth is off)
    route: Mapped[str] = mapped_column(String(256))
    model: Mapped[str] = mapped_column(String(128))
    version: Mapped[str] = mapped_column(String(16))
    target: Mapped[str] = mapped_column(String(160))
    score: Mapped[float] = mapped_column(Float)  # scaled to 0..1 (1 = best)
    raw: Mapped[str] = mapped_column(String(32))  # what the client sent: "up", "down" or the number
    comment: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class ExperimentRow(Base):
    __tablename__ = "experiments"
    __table_args__ = (Index("ix_experiments_route", "route"),)

    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    route: Mapped[str] = mapped_column(String(256))
    state: Mapped[str] = mapped_column(String(16))  # running | stopped
    definition: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_by: Mapped[str] = mapped_column(String(256))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class RolloutRow(Base):
    __tablename__ = "rollouts"
    __table_args__ = (Index("ix_rollouts_route", "route"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    route: Mapped[str] = mapped_column(String(256))
    model: Mapped[str] = mapped_column(String(128))
    control_version: Mapped[int] = mapped_column(Integer)
    candidate_version: Mapped[int] = mapped_column(Integer)
    steps: Mapped[list[int]] = mapped_column(JSON)
    step: Mapped[int] = mapped_column(Integer)  # index into steps
    state: Mapped[str] = mapped_column(String(16))  # running | paused | promoted | rolled_back | aborted
    plan: Mapped[dict[str, Any]] = mapped_column(JSON)  # guardrails, alpha, min sample, step duration, webhook
    reason: Mapped[str] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(String(256))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    step_started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class RolloutDecisionRow(Base):
    __tablename__ = "rollout_decisions"
    __table_args__ = (Index("ix_rollout_decisions_rollout_id", "rollout_id"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    rollout_id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"))
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    step: Mapped[int] = mapped_column(Integer)
    share: Mapped[int] = mapped_column(Integer)  # the candidate's percentage at this step
    action: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text)
    numbers: Mapped[dict[str, Any]] = mapped_column(JSON)  # the decision's comparisons and sample ratio
    actor: Mapped[str] = mapped_column(String(256))
