"""Reading and writing the stored request log (always from worker threads, never on the event loop)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select, update

from modelyard.observability.request_log_table import RequestLogRow
from modelyard.observability.request_record import RequestRecord
from modelyard.observability.request_row import COLUMNS, RowBuilder
from modelyard.store.database import Database

# Filled with the column names (this package's constants) and one bound-parameter marker per column.
_INSERT = "INSERT INTO request_log ({}) VALUES ({})"


@dataclass(frozen=True)
class RequestQuery:
    route: str | None = None
    model: str | None = None
    version: str | None = None
    status: str | None = None  # "200" or a class like "5xx"
    since: datetime | None = None
    until: datetime | None = None
    limit: int = 100
    with_bodies: bool = False
    shadow: bool | None = None  # True: only shadow copies; False: only client requests; None: both


class RequestLogStore:
    def __init__(self, database: Database) -> None:
        self.database = database
        self._insert_sql: str | None = None

    def insert(self, records: Sequence[RequestRecord]) -> int:
        builder = RowBuilder(timestamp_as_text=self.database.is_sqlite)
        return self.insert_rows([builder.row(record) for record in records])

    def insert_rows(self, rows: Sequence[tuple[Any, ...]]) -> int:
        """One executemany of plain tuples (``request_row.py``): the ORM's per-row dict handling cost ~45 µs a
        row, this a few."""
        if not rows:
            return 0
        with self.database.transaction() as session:
            connection = session.connection()
            if self._insert_sql is None:
                marker = "?" if connection.dialect.paramstyle == "qmark" else "%s"
                columns, markers = ", ".join(COLUMNS), ", ".join([marker] * len(COLUMNS))
                self._insert_sql = _INSERT.format(columns, markers)
            connection.exec_driver_sql(self._insert_sql, list(rows))
        return len(rows)

    def query(self, query: RequestQuery) -> list[dict[str, Any]]:
        return list(self.iter(query))

    def iter(self, query: RequestQuery, chunk: int = 1000) -> Iterator[dict[str, Any]]:
        """Newest first; ``limit`` 0 means everything (export), read in chunks by id."""
        remaining = query.limit or None
        before_id: int | None = None
        while remaining is None or remaining > 0:
            size = chunk if remaining is None else min(chunk, remaining)
            with self.database.transaction() as session:
                statement = _filtered(query)
                if before_id is not None:
                    statement = statement.where(RequestLogRow.id < before_id)
                rows = session.scalars(statement.order_by(RequestLogRow.id.desc()).limit(size)).all()
            if not rows:
                return
            for row in rows:
                yield _as_dict(row, query.with_bodies)
            before_id = rows[-1].id
            if remaining is not None:
                remaining -= len(rows)
            if len(rows) < size:
                return

    def find(self, request_id: str) -> list[dict[str, Any]]:
        """One request's rows, bodies included (as stored, redacted): the client's request, then its shadow copies.
        Scans by request id (no index: this is the console's detail view, not a per-request path)."""
        with self.database.transaction() as session:
            statement = select(RequestLogRow).where(
                (RequestLogRow.request_id == request_id) | (RequestLogRow.shadow_of == request_id)
            )
            rows = session.scalars(statement.order_by(RequestLogRow.id)).all()
        found = [_as_dict(row, True) for row in rows]
        return sorted(found, key=lambda row: row["shadow_of"] is not None)

    def shadow_pairs(self, query: RequestQuery) -> list[dict[str, Any]]:
        """Shadow copies with their primaries, side by side (newest first)."""
        shadows = self.query(replace(query, shadow=True))
        if not shadows:
            return []
        ids = [row["shadow_of"] for row in shadows]
        times = {row["received_at"] for row in shadows}
        with self.database.transaction() as session:
            statement = select(RequestLogRow).where(
                RequestLogRow.request_id.in_(ids), RequestLogRow.shadow_of.is_(None)
            )
            # A copy carries its primary's arrival time: the lookup stays within a range of the received_at index.
            moments = [datetime.fromisoformat(t.replace("Z", "+00:00")) for t in times]
            statement = statement.where(
                RequestLogRow.received_at >= min(moments) - timedelta(seconds=1),
                RequestLogRow.received_at <= max(moments) + timedelta(seconds=1),
            )
            primaries = {row.request_id: _as_dict(row, query.with_bodies) for row in session.scalars(statement)}
        return [{"primary": primaries.get(row["shadow_of"]), "shadow": row} for row in shadows]

    def purge(self, rows_before: datetime, bodies_before: datetime) -> tuple[int, int]:
        """Apply retention: drop old rows, and blank old bodies sooner (they are the sensitive part)."""
        with self.database.transaction() as session:
            removed = session.execute(delete(RequestLogRow).where(RequestLogRow.received_at < rows_before))
            blanked = session.execute(
                update(RequestLogRow)
                .where(RequestLogRow.received_at < bodies_before, RequestLogRow.request_body.is_not(None))
                .values(request_body=None, response_body=None)
            )
            # Session.execute is typed as returning Result, but a DML statement gives a CursorResult (rowcount).
            return removed.rowcount or 0, blanked.rowcount or 0  # type: ignore[attr-defined]


def _filtered(query: RequestQuery) -> Any:
    statement = select(RequestLogRow)
    if query.route is not None:
        statement = statement.where(RequestLogRow.route == query.route)
    if query.model is not None:
        statement = statement.where(RequestLogRow.model == query.model)
    if query.version is not None:
        statement = statement.where(RequestLogRow.version == query.version)
    if query.status is not None:
        if query.status.endswith("xx"):
            low = int(query.status[0]) * 100
            statement = statement.where(RequestLogRow.status >= low, RequestLogRow.status < low + 100)
        else:
            statement = statement.where(RequestLogRow.status == int(query.status))
    if query.shadow is not None:
        column = RequestLogRow.shadow_of
        statement = statement.where(column.is_not(None) if query.shadow else column.is_(None))
    if query.since is not None:
        statement = statement.where(RequestLogRow.received_at >= query.since)
    if query.until is not None:
        statement = statement.where(RequestLogRow.received_at < query.until)
    return statement


def _as_dict(row: RequestLogRow, with_bodies: bool) -> dict[str, Any]:
    data = {name: getattr(row, name) for name in COLUMNS}
    data["received_at"] = row.received_at.isoformat().replace("+00:00", "Z")
    if not with_bodies:
        data.pop("request_body")
        data.pop("response_body")
    return data
