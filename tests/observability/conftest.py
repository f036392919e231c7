from registry.conftest import database  # noqa: F401  (the SQLite + PostgreSQL fixture)
