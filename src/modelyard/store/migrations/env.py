"""Alembic environment: always run with a connection handed over by :func:`modelyard.store.migrate.upgrade`.

Offline (SQL script) mode is not offered: modelyard migrates the database it is pointed at, under a lock.
"""

from __future__ import annotations

from alembic import context

import modelyard.observability.request_log_table
import modelyard.registry.tables
import modelyard.security.tables  # noqa: F401
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
