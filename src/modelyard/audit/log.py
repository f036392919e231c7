"""The tamper-evident audit log: every admin action, hash-chained.

``append`` runs inside the caller's transaction (so an action and its audit record commit together or not at
all). Appends are serialised (PostgreSQL: an advisory transaction lock; SQLite: ``BEGIN IMMEDIATE`` already holds
the write lock), each record gets the next id explicitly, and its hash covers the previous record's hash plus the
canonical JSON of its own fields, id included. ``verify`` recomputes the chain and names the first record that was
edited, deleted or re-ordered; the ``audit_head`` row (last id and hash, written in the same transaction) catches
deletion of the newest records. Someone who can rewrite the whole table *and* recompute every hash defeats any
self-contained chain: export the head hash (``modelyard audit verify`` prints it) to somewhere they cannot write.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from modelyard.audit.tables import AuditHead, AuditRow
from modelyard.store.base import utcnow
from modelyard.store.database import Database

GENESIS = "0" * 64
_LOCK_KEY = 0x6D7961756469 & 0x7FFFFFFFFFFFFFFF  # "myaudi"


def canonical(record: dict[str, Any]) -> bytes:
    return orjson.dumps(record, option=orjson.OPT_SORT_KEYS)


def record_hash(prev_hash: str, record: dict[str, Any]) -> str:
    return hashlib.sha256(prev_hash.encode() + canonical(record)).hexdigest()


def _fields(row_id: int, at: datetime, actor: str, action: str, target: str, before: Any, after: Any) -> dict:
    return {
        "id": row_id,
        "at": at.isoformat(timespec="microseconds"),
        "actor": actor,
        "action": action,
        "target": target,
        "before": before,
        "after": after,
    }


def append(session: Session, actor: str, action: str, target: str, before: Any = None, after: Any = None) -> int:
    """Append one record in ``session``'s transaction; returns its id. For any admin write, e.g. deployments."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})
    head = session.get(AuditHead, 1, populate_existing=True)
    if head is None:  # pragma: no cover - the migration inserts it
        head = AuditHead(id=1, last_id=0, last_hash=GENESIS, note="")
        session.add(head)
    before, after = _jsonable(before), _jsonable(after)
    now = utcnow()
    row_id = head.last_id + 1
    digest = record_hash(head.last_hash, _fields(row_id, now, actor[:256], action, target[:256], before, after))
    session.add(
        AuditRow(
            id=row_id,
            at=now,
            actor=actor[:256],
            action=action,
            target=target[:256],
            before=before,
            after=after,
            prev_hash=head.last_hash,
            hash=digest,
        )
    )
    head.last_id, head.last_hash = row_id, digest
    session.flush()
    return row_id


def _jsonable(value: Any) -> Any:
    return None if value is None else orjson.loads(orjson.dumps(value, default=str))


@dataclass(frozen=True)
class AuditRecord:
    id: int
    at: datetime
    actor: str
    action: str
    target: str
    before: Any
    after: Any
    hash: str

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "at": self.at.isoformat(),
            "actor": self.actor,
            "action": self.action,
            "target": self.target,
            "before": self.before,
            "after": self.after,
            "hash": self.hash,
        }


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    checked: int
    head_id: int
    head_hash: str
    problem: str = ""
    record_id: int | None = None  # the first record found broken or missing


def verify_rows(rows: Iterator[AuditRow], head_id: int, head_hash: str) -> VerifyResult:
    """Pure walk over the rows in id order (tested without a database)."""
    prev_hash, expected_id, checked = GENESIS, 1, 0
    for row in rows:
        if row.id != expected_id:
            return VerifyResult(
                False, checked, head_id, head_hash, f"record {expected_id} is missing (deleted?)", expected_id
            )
        if row.prev_hash != prev_hash:
            return VerifyResult(
                False, checked, head_id, head_hash, f"record {row.id} does not follow record {row.id - 1}", row.id
            )
        fields = _fields(row.id, row.at, row.actor, row.action, row.target, row.before, row.after)
        if record_hash(prev_hash, fields) != row.hash:
            return VerifyResult(False, checked, head_id, head_hash, f"record {row.id} was edited", row.id)
        prev_hash, expected_id, checked = row.hash, expected_id + 1, checked + 1
    if checked != head_id or prev_hash != head_hash:
        missing = checked + 1
        return VerifyResult(
            False,
            checked,
            head_id,
            head_hash,
            f"records {missing}..{head_id} are missing (the newest were deleted)",
            missing,
        )
    return VerifyResult(True, checked, head_id, head_hash)


class AuditLog:
    def __init__(self, database: Database) -> None:
        self.database = database

    def append(self, actor: str, action: str, target: str, before: Any = None, after: Any = None) -> int:
        with self.database.transaction() as session:
            return append(session, actor, action, target, before, after)

    def list(self, limit: int = 100, action: str | None = None, target: str | None = None) -> list[AuditRecord]:
        query = select(AuditRow).order_by(AuditRow.id.desc()).limit(limit)
        if action:
            query = query.where(AuditRow.action == action)
        if target:
            query = query.where(AuditRow.target == target)
        with self.database.transaction() as session:
            return [
                AuditRecord(r.id, r.at, r.actor, r.action, r.target, r.before, r.after, r.hash)
                for r in session.scalars(query)
            ]

    def verify(self) -> VerifyResult:
        with self.database.transaction() as session:
            head = session.get(AuditHead, 1)
            head_id, head_hash = (head.last_id, head.last_hash) if head else (0, GENESIS)
            rows = session.scalars(select(AuditRow).order_by(AuditRow.id).execution_options(yield_per=1000))
            return verify_rows(iter(rows), head_id, head_hash)


def registry_change(kind: str, fields: dict[str, Any]) -> tuple[Any, Any]:
    """Before/after of a registry event, for the audit record the registry writes with it."""
    detail = fields.get("detail") or {}
    alias, version = fields.get("alias"), fields.get("version_number")
    if kind in ("alias_moved", "alias_removed"):
        return {"alias": alias, "version": fields.get("from_version")}, {
            "alias": alias,
            "version": fields.get("to_version"),
        }
    if kind == "model_updated":
        return {k: v.get("from") for k, v in detail.items()}, {k: v.get("to") for k, v in detail.items()}
    if kind == "version_archived":
        return {"version": version, "archived": False}, {"version": version, "archived": True}
    return None, {"version": version, **detail}
