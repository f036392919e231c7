"""The migration scripts and the concepts' declared tables describe the same schema (the store migrates tables it
does not import, so nothing else would notice if they drifted)."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

import modelyard.audit.tables
import modelyard.batches.tables
import modelyard.deploy.deployments_table
import modelyard.evals.tables
import modelyard.observability.request_log_table
import modelyard.registry.tables
import modelyard.responses.tables
import modelyard.rollouts.tables
import modelyard.security.tables
import modelyard.store.leases  # noqa: F401  (the imports register every table)
from modelyard.store import migrate
from modelyard.store.base import Base
from modelyard.store.database import Database

from conftest import postgres_schema_url


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_migrated_schema_matches_the_declared_tables(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if backend == "sqlite":
        database = Database(f"sqlite:///{tmp_path / 'schema.db'}")
    else:
        database = Database(postgres_schema_url(request.getfixturevalue("postgres_schema")))
    try:
        migrate.upgrade(database)
        assert migrate.current_revision(database) == migrate.head_revision()
        with database.connection() as connection:
            differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
        assert differences == []
    finally:
        database.dispose()
