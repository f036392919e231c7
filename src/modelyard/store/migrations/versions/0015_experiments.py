"""Experiments: feedback on served requests, experiments, rollouts and their decisions; the request log learns
which key made each request (feedback may be given only by that key) and is indexed by request id (feedback and
live evals look rows up by it; the index costs the write path about as much as the arrival-time one).

Revision ID: 0015_experiments
Revises: 0013_openai_surface
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from modelyard.store.base import UTCDateTime

revision = "0015_experiments"
down_revision = "0014_roles"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("request_log") as batch:
        batch.add_column(sa.Column("key_id", sa.String(32), nullable=True))
    op.create_index("ix_request_log_request_id", "request_log", ["request_id"])
    op.create_table(
        "feedback",
        sa.Column("request_id", sa.String(128), nullable=False),
        sa.Column("key_id", sa.String(32), nullable=False),
        sa.Column("route", sa.String(256), nullable=False),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("version", sa.String(16), nullable=False),
        sa.Column("target", sa.String(160), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("raw", sa.String(32), nullable=False),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("request_id", name="pk_feedback"),
    )
    op.create_index("ix_feedback_updated_at", "feedback", ["updated_at"])
    op.create_table(
        "experiments",
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("route", sa.String(256), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("definition", sa.JSON(), nullable=False),
        sa.Column("created_by", sa.String(256), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_experiments"),
    )
    op.create_index("ix_experiments_route", "experiments", ["route"])
    op.create_table(
        "rollouts",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("route", sa.String(256), nullable=False),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("control_version", sa.Integer(), nullable=False),
        sa.Column("candidate_version", sa.Integer(), nullable=False),
        sa.Column("steps", sa.JSON(), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("plan", sa.JSON(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_by", sa.String(256), nullable=False),
        sa.Column("started_at", UTCDateTime(), nullable=False),
        sa.Column("step_started_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_rollouts"),
    )
    op.create_index("ix_rollouts_route", "rollouts", ["route"])
    op.create_table(
        "rollout_decisions",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("rollout_id", _ID, nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("share", sa.Integer(), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("numbers", sa.JSON(), nullable=False),
        sa.Column("actor", sa.String(256), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_rollout_decisions"),
    )
    op.create_index("ix_rollout_decisions_rollout_id", "rollout_decisions", ["rollout_id"])


def downgrade() -> None:
    op.drop_table("rollout_decisions")
    op.drop_table("rollouts")
    op.drop_table("experiments")
    op.drop_table("feedback")
    op.drop_index("ix_request_log_request_id", table_name="request_log")
    with op.batch_alter_table("request_log") as batch:
        batch.drop_column("key_id")
