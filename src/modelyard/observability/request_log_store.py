"""Reading and writing the stored request log (always from worker threads, never on the event loop)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, insert, select, update

from modelyard.observability.body_policy import clip_body
from modelyard.observability.request_log_table import RequestLogRow
from modelyard.observability.request_record import RequestRecord
from modelyard.store.database import Database

_COLUMNS = [c.name for c in RequestLogRow.__table__.columns if c.name != "id"]


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


class RequestLogStore:
    def __init__(self, database: Database) -> None:
        self.database = database

    def insert(self, records: Sequence[RequestRecord]) -> int:
        rows = [_row(record) for record in records]
        if rows:
            with self.database.transaction() as session:
                session.execute(insert(RequestLogRow), rows)
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

    def purge(self, rows_before: datetime, bodies_before: datetime) -> tuple[int, int]:
        """Apply retention: drop old rows, and blank old bodies sooner (they are the sensitive part)."""
        with self.database.transaction() as session:
            removed = session.execute(delete(RequestLogRow).where(RequestLogRow.received_at < rows_before))
            blanked = session.execute(
                update(RequestLogRow)
                .where(RequestLogRow.received_at < bodies_before, RequestLogRow.request_body.is_not(None))
                .values(request_body=None, response_body=None)
            )
            return removed.rowcount or 0, blanked.rowcount or 0


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
    if query.since is not None:
        statement = statement.where(RequestLogRow.received_at >= query.since)
    if query.until is not None:
        statement = statement.where(RequestLogRow.received_at < query.until)
    return statement


def _row(record: RequestRecord) -> dict[str, Any]:
    fields = record.log_fields()
    row = {name: fields.get(name) for name in _COLUMNS if name in fields}
    row["received_at"] = datetime.fromtimestamp(record.received_at, UTC)
    row["request_body"] = clip_body(record.request_body) if record.request_body is not None else None
    row["response_body"] = clip_body(record.response_body) if record.response_body is not None else None
    return row


def _as_dict(row: RequestLogRow, with_bodies: bool) -> dict[str, Any]:
    data = {name: getattr(row, name) for name in _COLUMNS}
    data["received_at"] = row.received_at.isoformat().replace("+00:00", "Z")
    if not with_bodies:
        data.pop("request_body")
        data.pop("response_body")
    return data
