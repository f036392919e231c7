"""Bring the database schema to the version this modelyard expects, safely when several processes start at once.

Every gateway replica and every CLI call runs this before touching the store. Concurrent starts are serialised:
PostgreSQL with a transaction-scoped advisory lock, SQLite by the write lock ``BEGIN IMMEDIATE`` already takes.
"""

from __future__ import annotations

import logging
from importlib.resources import files

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text

from modelyard.store.database import Database

# Any constant works; this one is "modelyard" in ASCII, so it is recognisable in pg_locks.
_ADVISORY_LOCK_KEY = 0x6D6F64656C796172 & 0x7FFFFFFFFFFFFFFF


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(files("modelyard.store").joinpath("migrations")))
    return config


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(database: Database) -> str | None:
    with database.connection() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade(database: Database) -> None:
    """Apply pending migrations; a no-op costing one query when the schema is current."""
    logging.getLogger("alembic").setLevel(logging.WARNING)  # its INFO lines mean nothing to an operator
    head = head_revision()
    if current_revision(database) == head:
        return
    config = alembic_config()
    with database.transaction() as session:
        connection = session.connection()
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _ADVISORY_LOCK_KEY})
        if MigrationContext.configure(connection).get_current_revision() == head:
            return  # another process migrated while we waited for the lock
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
