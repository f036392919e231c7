"""Scale-out: the deployments configuration shared by every gateway replica (one row, polled by version).

Revision ID: 0014_roles
Revises: 0013_openai_surface
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from modelyard.store.base import UTCDateTime

revision = "0014_roles"
down_revision = "0013_openai_surface"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "deployments_config",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("updated_by", sa.String(256), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_deployments_config"),
    )


def downgrade() -> None:
    op.drop_table("deployments_config")
