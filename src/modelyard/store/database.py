"""Connecting to the store: SQLite (WAL) in the data directory by default, PostgreSQL when configured.

Every write transaction must be serialisable per model (two promotions racing must both land, in order). On
PostgreSQL the store takes row locks (``SELECT … FOR UPDATE``); SQLite has no row locks, so every transaction
starts with ``BEGIN IMMEDIATE``, which takes the database's write lock up front instead of failing half-way
with "database is locked" when two writers meet.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from modelyard import paths

DATABASE_URL_ENV = "MODELYARD_DATABASE_URL"
SQLITE_FILE = "modelyard.db"
CONNECT_TIMEOUT_S = 5


class StoreUnavailable(RuntimeError):
    """The database cannot be reached or refused the operation for reasons that are not the caller's fault."""


def database_url(explicit: str | None = None) -> URL:
    """The configured URL, with ``postgresql://`` mapped to the psycopg 3 driver modelyard ships with."""
    raw = explicit or os.environ.get(DATABASE_URL_ENV)
    if not raw:
        return make_url(f"sqlite:///{paths.data_dir() / SQLITE_FILE}")
    try:
        url = make_url(raw)
    except Exception as exc:  # SQLAlchemy raises ArgumentError with a terse message
        raise StoreUnavailable(f"{DATABASE_URL_ENV} is not a valid database URL: {raw!r}") from exc
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
    if not (url.drivername.startswith("sqlite") or url.drivername.startswith("postgresql")):
        raise StoreUnavailable(
            f"{DATABASE_URL_ENV} must be a sqlite:/// or postgresql:// URL, got '{url.drivername}://'"
        )
    return url


def describe_url(url: URL) -> str:
    """The URL as it may appear in logs and errors: without its password."""
    return url.render_as_string(hide_password=True)


class Database:
    """An engine plus a session factory; the one object the store's users pass around."""

    def __init__(self, url: URL | str | None = None, **engine_options: Any) -> None:
        self.url = database_url(url) if url is None or isinstance(url, str) else url
        self.engine = _create_engine(self.url, engine_options)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """One unit of work: committed when the block ends, rolled back on any error, never left half-written."""
        with self.outage_as_unavailable(), self._sessions.begin() as session:
            yield session

    @contextmanager
    def connection(self) -> Iterator[Connection]:
        with self.outage_as_unavailable(), self.engine.connect() as connection:
            yield connection

    @contextmanager
    def outage_as_unavailable(self) -> Iterator[None]:
        """An unreachable or locked database becomes :class:`StoreUnavailable`; other errors pass through."""
        try:
            yield
        except (OperationalError, DBAPIError) as exc:
            if _is_connectivity_error(exc):
                raise StoreUnavailable(
                    f"the registry database ({describe_url(self.url)}) is unavailable: {_first_line(exc)}"
                ) from exc
            raise

    def dispose(self) -> None:
        self.engine.dispose()


def _create_engine(url: URL, options: dict[str, Any]) -> Engine:
    if url.drivername.startswith("sqlite"):
        database = url.database or ""
        if database and database != ":memory:":
            Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30}, **options)
        event.listen(engine, "connect", _configure_sqlite_connection)
        event.listen(engine, "begin", _begin_immediate)
        return engine
    connect_args = {"connect_timeout": CONNECT_TIMEOUT_S}
    return create_engine(url, connect_args=connect_args, pool_pre_ping=True, pool_size=5, max_overflow=5, **options)


def _configure_sqlite_connection(dbapi_connection: Any, _record: Any) -> None:
    # Hand transaction control to SQLAlchemy's "begin" event (pysqlite would otherwise BEGIN lazily, DEFERRED).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")  # readers never block the writer, and vice versa
    cursor.execute("PRAGMA synchronous=NORMAL")  # durable at checkpoints; safe with WAL
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _begin_immediate(connection: Any) -> None:
    connection.exec_driver_sql("BEGIN IMMEDIATE")


_OUTAGE_WORDS = (
    "connect",
    "server",
    "closed",
    "timeout",
    "locked",
    "unable to open",
    "disk is full",  # SQLite: SQLITE_FULL (the file system has no room)
    "no space left",  # PostgreSQL: DiskFull, "could not extend file ...: No space left on device"
    "disk i/o error",  # SQLite: SQLITE_IOERR (a write the file system refused, such as a file-size limit)
)


def _is_connectivity_error(exc: DBAPIError) -> bool:
    if exc.connection_invalidated:
        return True
    if isinstance(exc, OperationalError):
        text = str(exc.orig).lower()
        # SQLite "locked" past busy_timeout, unreachable servers and a full or failing disk are all outages, not
        # bad requests: the same statement succeeds once they end.
        return any(word in text for word in _OUTAGE_WORDS)
    return False


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", exc)) or type(exc).__name__
    return text.strip().splitlines()[0]
