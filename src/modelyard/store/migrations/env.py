"""Alembic environment: always run with a connection handed over by :func:`modelyard.store.migrate.upgrade`.

Offline (SQL script) mode is not offered: modelyard migrates the database it is pointed at, under a lock. The
migration scripts spell their tables out (they must not change when a concept's table class does), so this
environment needs no table classes: the store does not know the concepts whose tables it migrates. A test
compares the migrated schema with every concept's declared tables.
"""

from __future__ import annotations

from alembic import context

from modelyard.store.base import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("modelyard migrations run through `modelyard db upgrade`, which supplies the connection")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
