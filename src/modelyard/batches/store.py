"""Files and batches in the database, per key: uploads, batch jobs, each line's outcome, the output files.

A batch's lines are rows of their own: the runner records each answer as it arrives (one short transaction), so
after a restart only the lines still pending run again. Everything belongs to the key that created it; another
key's ids read as not found.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import select, update

from modelyard.batches.lines import BatchLine, BatchRequestError, parse_lines
from modelyard.batches.tables import BatchLineRow, BatchRow, FileRow
from modelyard.store.database import Database

__all__ = ["BatchNotFound", "BatchRequestError", "BatchStore", "PendingLine"]

ACTIVE = ("validating", "in_progress", "cancelling")
FINISHED = ("completed", "failed", "cancelled", "expired")
WINDOWS = {"24h": 24 * 3600}


class BatchNotFound(Exception):
    pass


@dataclass(frozen=True)
class PendingLine:
    batch_id: str
    key_id: str
    priority: str
    line: int
    custom_id: str
    url: str
    body: dict[str, Any]


def _id(prefix: str) -> str:
    return f"{prefix}{secrets.token_hex(12)}"


class BatchStore:
    def __init__(self, database: Database, retention_s: float, max_lines: int) -> None:
        self._database = database
        self._retention = timedelta(seconds=retention_s)
        self._max_lines = max_lines

    # -- files ------------------------------------------------------------------------------------------------------

    def create_file(self, key_id: str, purpose: str, filename: str, content: bytes) -> dict[str, Any]:
        if purpose != "batch":
            raise BatchRequestError("purpose must be 'batch' (the only purpose this gateway stores).", "purpose")
        parse_lines(content, self._max_lines)  # refused whole, with the line number, before anything is stored
        now = datetime.now(UTC)
        row = FileRow(
            id=_id("file-"),
            key_id=key_id,
            purpose=purpose,
            filename=filename,
            size=len(content),
            created_at=now,
            expires_at=now + self._retention,
            content=content,
        )
        with self._database.transaction() as session:
            session.add(row)
            return _file_object(row)

    def file(self, key_id: str, file_id: str) -> dict[str, Any]:
        with self._database.transaction() as session:
            return _file_object(self._file_row(session, key_id, file_id))

    def file_content(self, key_id: str, file_id: str) -> bytes:
        with self._database.transaction() as session:
            return bytes(self._file_row(session, key_id, file_id).content)

    @staticmethod
    def _file_row(session: Any, key_id: str, file_id: str) -> FileRow:
        row = session.get(FileRow, file_id)
        if row is None or row.key_id != key_id:
            raise BatchNotFound(f"No file with id '{file_id}'.")
        return row

    # -- batches ----------------------------------------------------------------------------------------------------

    def create(
        self, key_id: str, input_file_id: str, endpoint: str, window: str, metadata: dict[str, Any] | None
    ) -> dict[str, Any]:
        if window not in WINDOWS:
            raise BatchRequestError(f"completion_window must be one of {', '.join(WINDOWS)}.", "completion_window")
        with self._database.transaction() as session:
            file = self._file_row(session, key_id, input_file_id)
            lines = parse_lines(bytes(file.content), self._max_lines)
            wrong = next((line for line in lines if line.url != endpoint), None)
            if wrong is not None:
                raise BatchRequestError(
                    f"Line {wrong.line}: url {wrong.url} differs from the batch's endpoint {endpoint}.", "endpoint"
                )
            now = datetime.now(UTC)
            row = BatchRow(
                id=_id("batch_"),
                key_id=key_id,
                endpoint=endpoint,
                input_file_id=input_file_id,
                completion_window=window,
                status="in_progress",
                priority="batch",
                total=len(lines),
                completed=0,
                failed=0,
                metadata_=metadata,
                created_at=now,
                in_progress_at=now,
                expires_at=now + timedelta(seconds=WINDOWS[window]),
            )
            session.add(row)
            session.add_all(_line_row(row.id, line) for line in lines)
            session.flush()
            return _batch_object(row)

    def get(self, key_id: str, batch_id: str) -> dict[str, Any]:
        with self._database.transaction() as session:
            return _batch_object(self._batch_row(session, key_id, batch_id))

    def cancel(self, key_id: str, batch_id: str) -> dict[str, Any]:
        with self._database.transaction() as session:
            row = self._batch_row(session, key_id, batch_id)
            if row.status in ("validating", "in_progress"):
                row.status = "cancelling"
                row.cancelling_at = datetime.now(UTC)
            return _batch_object(row)

    @staticmethod
    def _batch_row(session: Any, key_id: str, batch_id: str) -> BatchRow:
        row = session.get(BatchRow, batch_id)
        if row is None or row.key_id != key_id:
            raise BatchNotFound(f"No batch with id '{batch_id}'.")
        return row

    # -- the runner's side --------------------------------------------------------------------------------------------

    def active(self) -> list[tuple[str, str]]:
        """(id, status) of the batches that still have work, oldest first."""
        with self._database.transaction() as session:
            rows = session.execute(
                select(BatchRow.id, BatchRow.status).where(BatchRow.status.in_(ACTIVE)).order_by(BatchRow.created_at)
            )
            return [(r.id, r.status) for r in rows]

    def pending(self, batch_id: str, limit: int) -> list[PendingLine]:
        with self._database.transaction() as session:
            batch = session.get(BatchRow, batch_id)
            if batch is None:
                return []
            rows = session.scalars(
                select(BatchLineRow)
                .where(BatchLineRow.batch_id == batch_id, BatchLineRow.done == 0)
                .order_by(BatchLineRow.line)
                .limit(limit)
            )
            return [
                PendingLine(batch_id, batch.key_id, batch.priority, r.line, r.custom_id, batch.endpoint, r.body)
                for r in rows
            ]

    def record(self, line: PendingLine, status: int, request_id: str, response: dict[str, Any]) -> None:
        """One line's answer, and the batch's counts, in one transaction (only a pending line counts)."""
        with self._database.transaction() as session:
            done = session.execute(
                update(BatchLineRow)
                .where(BatchLineRow.batch_id == line.batch_id, BatchLineRow.line == line.line, BatchLineRow.done == 0)
                .values(done=1, status=status, request_id=request_id, response=response)
            )
            if done.rowcount:  # type: ignore[attr-defined]
                counter = BatchRow.completed if status == 200 else BatchRow.failed
                session.execute(update(BatchRow).where(BatchRow.id == line.batch_id).values({counter: counter + 1}))

    def finalize(self, batch_id: str) -> None:
        """Write the output and error files and close the batch (cancelled if it was being cancelled)."""
        with self._database.transaction() as session:
            batch = session.get(BatchRow, batch_id)
            if batch is None or batch.status in FINISHED:
                return
            now = datetime.now(UTC)
            batch.finalizing_at = now
            lines = session.scalars(
                select(BatchLineRow)
                .where(BatchLineRow.batch_id == batch_id, BatchLineRow.done == 1)
                .order_by(BatchLineRow.line)
            )
            good: list[bytes] = []
            bad: list[bytes] = []
            for line in lines:
                (good if line.status == 200 else bad).append(_output_line(line))
            for lines_out, field in ((good, "output_file_id"), (bad, "error_file_id")):
                if lines_out:
                    content = b"".join(lines_out)
                    file = FileRow(
                        id=_id("file-"),
                        key_id=batch.key_id,
                        purpose="batch_output",
                        filename=f"{batch_id}_{field.removesuffix('_file_id')}.jsonl",
                        size=len(content),
                        created_at=now,
                        expires_at=now + self._retention,
                        content=content,
                    )
                    session.add(file)
                    setattr(batch, field, file.id)
            if batch.status == "cancelling":
                batch.status, batch.cancelled_at = "cancelled", now
            else:
                batch.status, batch.completed_at = "completed", now


def _line_row(batch_id: str, line: BatchLine) -> BatchLineRow:
    return BatchLineRow(batch_id=batch_id, line=line.line, custom_id=line.custom_id, body=line.body, done=0)


def _output_line(line: BatchLineRow) -> bytes:
    record = {
        "id": f"batch_req_{line.batch_id.removeprefix('batch_')}_{line.line}",
        "custom_id": line.custom_id,
        "response": {"status_code": line.status, "request_id": line.request_id, "body": line.response},
        "error": None,
    }
    return orjson.dumps(record) + b"\n"


def _file_object(row: FileRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "object": "file",
        "bytes": row.size,
        "created_at": int(row.created_at.timestamp()),
        "expires_at": int(row.expires_at.timestamp()),
        "filename": row.filename,
        "purpose": row.purpose,
        "status": "processed",
    }


def _ts(moment: datetime | None) -> int | None:
    return None if moment is None else int(moment.timestamp())


def _batch_object(row: BatchRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "object": "batch",
        "endpoint": row.endpoint,
        "errors": None,
        "input_file_id": row.input_file_id,
        "completion_window": row.completion_window,
        "status": row.status,
        "output_file_id": row.output_file_id,
        "error_file_id": row.error_file_id,
        "created_at": _ts(row.created_at),
        "in_progress_at": _ts(row.in_progress_at),
        "expires_at": _ts(row.expires_at),
        "finalizing_at": _ts(row.finalizing_at),
        "completed_at": _ts(row.completed_at),
        "failed_at": None,
        "expired_at": None,
        "cancelling_at": _ts(row.cancelling_at),
        "cancelled_at": _ts(row.cancelled_at),
        "request_counts": {"total": row.total, "completed": row.completed, "failed": row.failed},
        "metadata": row.metadata_,
    }
