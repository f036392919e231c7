"""Registry: models, immutable versions, aliases, append-only events.

Revision ID: 0001_registry
Revises:
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from modelyard.store.base import UTCDateTime

revision = "0001_registry"
down_revision = None
branch_labels = None
depends_on = None

_IMMUTABLE = [
    "model_id",
    "number",
    "artifact_uri",
    "sha256",
    "size_bytes",
    "format",
    "quantization",
    "architecture",
    "parameter_count",
    "context_length",
    "license",
    "base_model",
    "parent_version_id",
    "training_data",
    "fine_tuning_data",
    "lineage_notes",
    "header",
    "created_by",
    "created_at",
]


def upgrade() -> None:
    op.create_table(
        "registered_models",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("owner", sa.String(256), nullable=False),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("created_by", sa.String(256), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_registered_models"),
        sa.UniqueConstraint("name", name="uq_registered_models_name"),
    )
    op.create_table(
        "model_versions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("artifact_uri", sa.Text(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("format", sa.String(32), nullable=False),
        sa.Column("quantization", sa.String(64), nullable=False),
        sa.Column("architecture", sa.String(64), nullable=False),
        sa.Column("parameter_count", sa.BigInteger(), nullable=True),
        sa.Column("context_length", sa.Integer(), nullable=True),
        sa.Column("license", sa.String(256), nullable=False),
        sa.Column("base_model", sa.String(256), nullable=False),
        sa.Column("parent_version_id", sa.Integer(), nullable=True),
        sa.Column("training_data", sa.JSON(), nullable=False),
        sa.Column("fine_tuning_data", sa.JSON(), nullable=False),
        sa.Column("lineage_notes", sa.Text(), nullable=False),
        sa.Column("header", sa.JSON(), nullable=False),
        sa.Column("created_by", sa.String(256), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("archived_at", UTCDateTime(), nullable=True),
        sa.Column("archived_by", sa.String(256), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_model_versions"),
        sa.ForeignKeyConstraint(
            ["model_id"], ["registered_models.id"], name="fk_model_versions_model_id_registered_models"
        ),
        sa.ForeignKeyConstraint(
            ["parent_version_id"], ["model_versions.id"], name="fk_model_versions_parent_version_id_model_versions"
        ),
        sa.UniqueConstraint("model_id", "number", name="uq_model_versions_model_id_number"),
        sa.UniqueConstraint("sha256", name="uq_model_versions_sha256"),
    )
    op.create_table(
        "model_aliases",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("updated_by", sa.String(256), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_model_aliases"),
        sa.ForeignKeyConstraint(
            ["model_id"], ["registered_models.id"], name="fk_model_aliases_model_id_registered_models"
        ),
        sa.ForeignKeyConstraint(
            ["version_id"], ["model_versions.id"], name="fk_model_aliases_version_id_model_versions"
        ),
        sa.UniqueConstraint("model_id", "name", name="uq_model_aliases_model_id_name"),
    )
    op.create_table(
        "registry_events",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("version_number", sa.Integer(), nullable=True),
        sa.Column("alias", sa.String(64), nullable=True),
        sa.Column("from_version", sa.Integer(), nullable=True),
        sa.Column("to_version", sa.Integer(), nullable=True),
        sa.Column("actor", sa.String(256), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_registry_events"),
        sa.ForeignKeyConstraint(
            ["model_id"], ["registered_models.id"], name="fk_registry_events_model_id_registered_models"
        ),
    )
    op.create_index("ix_registry_events_model_id_id", "registry_events", ["model_id", "id"])
    _install_guards()


def downgrade() -> None:
    _drop_guards()
    op.drop_index("ix_registry_events_model_id_id", table_name="registry_events")
    op.drop_table("registry_events")
    op.drop_table("model_aliases")
    op.drop_table("model_versions")
    op.drop_table("registered_models")


def _install_guards() -> None:
    """Database-level immutability: the ORM never issues these updates, and neither may anyone else."""
    if op.get_bind().dialect.name == "sqlite":
        changed = " OR ".join(f"NEW.{c} IS NOT OLD.{c}" for c in _IMMUTABLE)
        op.execute(
            "CREATE TRIGGER model_versions_immutable BEFORE UPDATE ON model_versions "
            f"WHEN {changed} BEGIN SELECT RAISE(ABORT, 'model versions are immutable'); END"
        )
        op.execute(
            "CREATE TRIGGER model_versions_no_delete BEFORE DELETE ON model_versions "
            "BEGIN SELECT RAISE(ABORT, 'model versions are never deleted; archive them'); END"
        )
        op.execute(
            "CREATE TRIGGER registry_events_append_only_update BEFORE UPDATE ON registry_events "
            "BEGIN SELECT RAISE(ABORT, 'registry events are append-only'); END"
        )
        op.execute(
            "CREATE TRIGGER registry_events_append_only_delete BEFORE DELETE ON registry_events "
            "BEGIN SELECT RAISE(ABORT, 'registry events are append-only'); END"
        )
        return
    changed = " OR ".join(f"NEW.{c}::text IS DISTINCT FROM OLD.{c}::text" for c in _IMMUTABLE)
    op.execute(
        "CREATE FUNCTION modelyard_version_immutable() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        "IF TG_OP = 'DELETE' THEN RAISE EXCEPTION 'model versions are never deleted; archive them'; END IF; "
        f"IF {changed} THEN RAISE EXCEPTION 'model versions are immutable'; END IF; RETURN NEW; END $$"
    )
    op.execute(
        "CREATE TRIGGER model_versions_immutable BEFORE UPDATE OR DELETE ON model_versions "
        "FOR EACH ROW EXECUTE FUNCTION modelyard_version_immutable()"
    )
    op.execute(
        "CREATE FUNCTION modelyard_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        "RAISE EXCEPTION '% is append-only', TG_TABLE_NAME; END $$"
    )
    op.execute(
        "CREATE TRIGGER registry_events_append_only BEFORE UPDATE OR DELETE ON registry_events "
        "FOR EACH ROW EXECUTE FUNCTION modelyard_append_only()"
    )


def _drop_guards() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for name in (
            "model_versions_immutable",
            "model_versions_no_delete",
            "registry_events_append_only_update",
            "registry_events_append_only_delete",
        ):
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
        return
    op.execute("DROP TRIGGER IF EXISTS registry_events_append_only ON registry_events")
    op.execute("DROP TRIGGER IF EXISTS model_versions_immutable ON model_versions")
    op.execute("DROP FUNCTION IF EXISTS modelyard_append_only()")
    op.execute("DROP FUNCTION IF EXISTS modelyard_version_immutable()")
