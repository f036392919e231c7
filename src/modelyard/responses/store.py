"""Stored responses, per key: saved after the answer was sent, read and deleted by id, purged once expired.

A response is visible only to the key that created it (another key's id reads as not found, as at OpenAI).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, select

from modelyard.responses.tables import StoredResponseRow
from modelyard.store.database import Database


class ResponseNotFound(Exception):
    def __init__(self, response_id: str) -> None:
        super().__init__(f"No response with id '{response_id}' is stored for this key.")
        self.response_id = response_id


@dataclass(frozen=True)
class StoredResponse:
    id: str
    body: dict[str, Any]
    conversation: list[Any]


class ResponseStore:
    def __init__(self, database: Database, retention_s: float) -> None:
        self._database = database
        self._retention = timedelta(seconds=retention_s)

    def save(self, key_id: str, body: dict[str, Any], conversation: list[Any]) -> None:
        now = datetime.now(UTC)
        row = StoredResponseRow(
            id=body["id"],
            key_id=key_id,
            created_at=now,
            expires_at=now + self._retention,
            body=body,
            conversation=conversation,
        )
        with self._database.transaction() as session:
            session.add(row)

    def get(self, key_id: str, response_id: str) -> StoredResponse:
        with self._database.transaction() as session:
            row = session.get(StoredResponseRow, response_id)
            if row is None or row.key_id != key_id or row.expires_at < datetime.now(UTC):
                raise ResponseNotFound(response_id)
            return StoredResponse(row.id, row.body, row.conversation)

    def delete(self, key_id: str, response_id: str) -> None:
        with self._database.transaction() as session:
            done = session.execute(
                delete(StoredResponseRow).where(StoredResponseRow.id == response_id, StoredResponseRow.key_id == key_id)
            )
            if not done.rowcount:  # type: ignore[attr-defined]
                raise ResponseNotFound(response_id)

    def purge_expired(self) -> int:
        with self._database.transaction() as session:
            expired = select(StoredResponseRow.id).where(StoredResponseRow.expires_at < datetime.now(UTC))
            ids = list(session.scalars(expired))
            if ids:
                session.execute(delete(StoredResponseRow).where(StoredResponseRow.id.in_(ids)))
            return len(ids)
