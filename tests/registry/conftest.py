"""Registry fixtures: every store test runs on SQLite and on the real PostgreSQL server."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from modelyard.registry.integrity import IntegrityChecker
from modelyard.registry.store import RegistryStore
from modelyard.roles.stores import registry_store
from modelyard.store import migrate
from modelyard.store.database import Database

from conftest import postgres_schema_url
from registry.gguf_files import write_gguf


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    if request.param == "sqlite":
        db = Database(f"sqlite:///{tmp_path / 'registry.db'}")
    else:
        db = Database(postgres_schema_url(request.getfixturevalue("postgres_schema")))
    migrate.upgrade(db)
    yield db
    db.dispose()


@pytest.fixture
def store(database: Database) -> RegistryStore:
    return registry_store(database)


@pytest.fixture
def checker(tmp_path: Path) -> IntegrityChecker:
    return IntegrityChecker(tmp_path / "integrity")


@pytest.fixture
def gguf_file(tmp_path: Path) -> Callable[..., Path]:
    """Write a distinct small GGUF per seed."""

    def make(seed: int = 1, name: str | None = None) -> Path:
        return write_gguf(tmp_path / (name or f"model-{seed}.gguf"), seed=seed)

    return make
