"""Evaluation evidence: eval runs, their case results, quant reports, and per-model promotion gates.

Runs, case results and quant reports are insert-only (triggers refuse UPDATE and DELETE), like registry events:
a promotion gate's evidence cannot be rewritten after the fact.

Revision ID: 0006_evals
Revises: 0005_shadow_requests
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from modelyard.store.base import UTCDateTime

revision = "0006_evals"
down_revision = "0005_shadow_requests"
branch_labels = None
depends_on = None

_BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_INSERT_ONLY = ("eval_runs", "eval_case_results", "quant_reports")


def upgrade() -> None:
    op.create_table(
        "eval_runs",
        sa.Column("id", _BIG_ID, nullable=False),
        sa.Column("run_id", sa.String(32), nullable=False),
        sa.Column("model_version_id", sa.Integer(), nullable=True),
        sa.Column("suite", sa.String(128), nullable=False),
        sa.Column("suite_sha256", sa.String(64), nullable=False),
        sa.Column("dataset_sha256", sa.String(64), nullable=False),
        sa.Column("target", sa.String(256), nullable=False),
        sa.Column("gateway_url", sa.String(512), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("passed", sa.Integer(), nullable=False),
        sa.Column("failed", sa.Integer(), nullable=False),
        sa.Column("errors", sa.Integer(), nullable=False),
        sa.Column("pass_rate", sa.Float(), nullable=False),
        sa.Column("pass_threshold", sa.Float(), nullable=False),
        sa.Column("threshold_met", sa.Boolean(), nullable=False),
        sa.Column("temperature", sa.Float(), nullable=False),
        sa.Column("seed", sa.Integer(), nullable=True),
        sa.Column("cached_from", sa.String(32), nullable=True),
        sa.Column("abort_reason", sa.Text(), nullable=True),
        sa.Column("summary", sa.JSON(), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("report_path", sa.Text(), nullable=False),
        sa.Column("created_by", sa.String(256), nullable=False),
        sa.Column("started_at", UTCDateTime(), nullable=False),
        sa.Column("finished_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_eval_runs"),
        sa.UniqueConstraint("run_id", name="uq_eval_runs_run_id"),
        sa.ForeignKeyConstraint(
            ["model_version_id"], ["model_versions.id"], name="fk_eval_runs_model_version_id_model_versions"
        ),
    )
    op.create_index("ix_eval_runs_model_version_id", "eval_runs", ["model_version_id"])
    op.create_index("ix_eval_runs_suite", "eval_runs", ["suite"])
    op.create_table(
        "eval_case_results",
        sa.Column("id", _BIG_ID, nullable=False),
        sa.Column("run_pk", _BIG_ID, nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.String(256), nullable=False),
        sa.Column("request", sa.JSON(), nullable=False),
        sa.Column("expected", sa.JSON(), nullable=True),
        sa.Column("metadata", sa.JSON(), nullable=False),
        sa.Column("output", sa.Text(), nullable=True),
        sa.Column("passed", sa.Boolean(), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("assertions", sa.JSON(), nullable=False),
        sa.Column("latency_ms", sa.Float(), nullable=True),
        sa.Column("prompt_tokens", sa.Integer(), nullable=True),
        sa.Column("completion_tokens", sa.Integer(), nullable=True),
        sa.Column("answered_by", sa.String(160), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_eval_case_results"),
        sa.ForeignKeyConstraint(["run_pk"], ["eval_runs.id"], name="fk_eval_case_results_run_pk_eval_runs"),
    )
    op.create_index("ix_eval_case_results_run_pk", "eval_case_results", ["run_pk"])
    op.create_table(
        "quant_reports",
        sa.Column("id", _BIG_ID, nullable=False),
        sa.Column("report_id", sa.String(32), nullable=False),
        sa.Column("candidate_version_id", sa.Integer(), nullable=False),
        sa.Column("base_version_id", sa.Integer(), nullable=False),
        sa.Column("text_path", sa.Text(), nullable=False),
        sa.Column("text_sha256", sa.String(64), nullable=False),
        sa.Column("ctx_size", sa.Integer(), nullable=False),
        sa.Column("chunks", sa.Integer(), nullable=False),
        sa.Column("ppl_base", sa.Float(), nullable=False),
        sa.Column("ppl_candidate", sa.Float(), nullable=False),
        sa.Column("ppl_ratio", sa.Float(), nullable=False),
        sa.Column("kld_mean", sa.Float(), nullable=False),
        sa.Column("kld_p99", sa.Float(), nullable=False),
        sa.Column("top_token_agreement", sa.Float(), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.Column("created_by", sa.String(256), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_quant_reports"),
        sa.UniqueConstraint("report_id", name="uq_quant_reports_report_id"),
        sa.ForeignKeyConstraint(
            ["candidate_version_id"], ["model_versions.id"], name="fk_quant_reports_candidate_version_id_model_versions"
        ),
        sa.ForeignKeyConstraint(
            ["base_version_id"], ["model_versions.id"], name="fk_quant_reports_base_version_id_model_versions"
        ),
    )
    op.create_index("ix_quant_reports_candidate_version_id", "quant_reports", ["candidate_version_id"])
    op.create_table(
        "model_gates",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("updated_by", sa.String(256), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_model_gates"),
        sa.UniqueConstraint("model_id", name="uq_model_gates_model_id"),
        sa.ForeignKeyConstraint(
            ["model_id"], ["registered_models.id"], name="fk_model_gates_model_id_registered_models"
        ),
    )
    _install_guards()


def downgrade() -> None:
    _drop_guards()
    op.drop_table("model_gates")
    op.drop_table("quant_reports")
    op.drop_table("eval_case_results")
    op.drop_table("eval_runs")


def _install_guards() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    for table in _INSERT_ONLY:
        if sqlite:
            for action in ("UPDATE", "DELETE"):
                op.execute(
                    f"CREATE TRIGGER {table}_insert_only_{action.lower()} BEFORE {action} ON {table} "
                    f"BEGIN SELECT RAISE(ABORT, '{table} rows are insert-only evidence'); END"
                )
        else:
            # modelyard_append_only() was created by 0001_registry for registry_events.
            op.execute(
                f"CREATE TRIGGER {table}_insert_only BEFORE UPDATE OR DELETE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION modelyard_append_only()"
            )


def _drop_guards() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    for table in _INSERT_ONLY:
        if sqlite:
            for action in ("update", "delete"):
                op.execute(f"DROP TRIGGER IF EXISTS {table}_insert_only_{action}")
        else:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_insert_only ON {table}")
