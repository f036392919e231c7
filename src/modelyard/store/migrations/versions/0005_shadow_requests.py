"""Request log: shadow copies next to their primaries.

A shadow copy is stored as its own request-log row with ``shadow_of`` set to the primary's request id, and the
comparison with the primary's answer (``outputs_match``, ``similarity``). Nullable columns: existing rows are
client requests and stay as they are.

Revision ID: 0005_shadow_requests
Revises: 0002_request_log
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_shadow_requests"
down_revision = "0002_request_log"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("request_log") as batch:
        batch.add_column(sa.Column("shadow_of", sa.String(128), nullable=True))
        batch.add_column(sa.Column("outputs_match", sa.Boolean(), nullable=True))
        batch.add_column(sa.Column("similarity", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("request_log") as batch:
        batch.drop_column("similarity")
        batch.drop_column("outputs_match")
        batch.drop_column("shadow_of")
