"""Opening the stores a command works on: the database migrated to this version's schema, and the registry with
the evals concept's promotion gates wired in (the registry itself does not know about evals)."""

from __future__ import annotations

from modelyard import paths
from modelyard.evals.promotion import check_promotion
from modelyard.registry.integrity import IntegrityChecker
from modelyard.registry.store import RegistryStore
from modelyard.store import migrate
from modelyard.store.database import Database


def open_database(url: str | None = None) -> Database:
    database = Database(url)
    migrate.upgrade(database)
    return database


def open_registry(database_url: str | None = None) -> tuple[RegistryStore, IntegrityChecker]:
    return registry_store(open_database(database_url)), IntegrityChecker(paths.data_dir() / "integrity")


def registry_store(database: Database) -> RegistryStore:
    return RegistryStore(database, check_promotion)
