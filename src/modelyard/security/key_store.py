"""API keys, spend and guardrail config in the database: the control plane's side of security.

Every write bumps ``security_state.revision`` and appends an audit record in the same transaction, so replicas
polling the revision see the change and the audit log always agrees with the table. Nothing here is called on
the request path: gateways read keys from their in-memory snapshot (:mod:`modelyard.security.snapshot`).
"""

from __future__ import annotations

import builtins
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from modelyard.audit import log as audit
from modelyard.security.keys import (
    ADMIN,
    BUDGET_PERIODS,
    INFERENCE,
    READ,
    SCOPES,
    KeyGrant,
    KeyHasher,
    KeyLimits,
    display_prefix,
    generate_key,
    new_key_id,
)
from modelyard.security.tables import ApiKeyRow, KeySpendRow, SecurityState
from modelyard.store.base import utcnow
from modelyard.store.database import Database

ADMIN_KEY_ENV = "MODELYARD_ADMIN_KEY"
BOOTSTRAP_NAME = "bootstrap-admin"


class KeyRequestError(ValueError):
    """A request about keys that cannot be honoured (a bad name, scope or limit)."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message, self.param = message, param


class UnknownKey(KeyRequestError):
    """No key has this id."""


@dataclass(frozen=True)
class NewKey:
    name: str
    scopes: tuple[str, ...] = (INFERENCE,)
    models: tuple[str, ...] = ()
    regions: tuple[str, ...] = ()
    limits: KeyLimits = field(default_factory=KeyLimits)
    expires_at: datetime | None = None


@dataclass(frozen=True)
class KeyRecord:
    id: str
    name: str
    prefix: str
    scopes: list[str]
    models: list[str]
    regions: list[str]
    limits: dict[str, Any]
    created_by: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    revoked_by: str | None

    @property
    def status(self) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= utcnow():
            return "expired"
        return "active"

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "prefix": self.prefix,
            "scopes": self.scopes,
            "models": self.models,
            "regions": self.regions,
            "limits": self.limits,
            "created_by": self.created_by,
            "created_at": self.created_at.isoformat(),
            "expires_at": self.expires_at.isoformat() if self.expires_at else None,
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
            "revoked_by": self.revoked_by,
            "status": self.status,
        }


def validate_new_key(new: NewKey) -> None:
    if not new.name.strip() or len(new.name) > 128:
        raise KeyRequestError("key name must be 1-128 characters", param="name")
    unknown = set(new.scopes) - set(SCOPES)
    if unknown or not new.scopes:
        raise KeyRequestError(
            f"scopes must be a non-empty subset of {', '.join(SCOPES)}; got {sorted(new.scopes)}", "scopes"
        )
    limits = new.limits
    if min(limits.rpm, limits.tpm, limits.concurrency, limits.token_budget) < 0 or limits.cost_budget_usd < 0:
        raise KeyRequestError("limits and budgets cannot be negative", param="limits")
    if limits.priority not in ("interactive", "batch"):
        raise KeyRequestError("priority must be interactive or batch", param="limits.priority")
    if limits.budget_period not in BUDGET_PERIODS:
        raise KeyRequestError(f"budget_period must be one of {', '.join(BUDGET_PERIODS)}", param="limits.budget_period")
    if new.expires_at is not None and new.expires_at.tzinfo is None:
        raise KeyRequestError("expires_at must carry a time zone", param="expires_at")


class KeyStore:
    def __init__(self, database: Database, hasher: KeyHasher) -> None:
        self.database = database
        self._hash = hasher

    # -- reads (control plane and snapshot poller) -------------------------------------------------------------

    def revision(self) -> int:
        with self.database.connection() as connection:
            return int(connection.execute(select(SecurityState.revision).where(SecurityState.id == 1)).scalar() or 0)

    def grants(self) -> tuple[int, dict[str, KeyGrant], dict[str, Any] | None]:
        """Revision, every non-revoked key's grant by hash, and the stored guardrail config, read consistently."""
        with self.database.transaction() as session:
            state = session.get(SecurityState, 1)
            rows = session.scalars(select(ApiKeyRow).where(ApiKeyRow.revoked_at.is_(None))).all()
            grants = {row.key_hash: _grant(row) for row in rows}
            return (state.revision if state else 0), grants, (state.guardrails if state else None)

    def list(self, include_revoked: bool = True) -> list[KeyRecord]:
        query = select(ApiKeyRow).order_by(ApiKeyRow.created_at)
        if not include_revoked:
            query = query.where(ApiKeyRow.revoked_at.is_(None))
        with self.database.transaction() as session:
            return [_record(row) for row in session.scalars(query)]

    def get(self, key_id: str) -> KeyRecord:
        with self.database.transaction() as session:
            return _record(_load(session, key_id))

    def count(self) -> int:
        with self.database.transaction() as session:
            return int(session.scalar(select(func.count()).select_from(ApiKeyRow)) or 0)

    # -- writes --------------------------------------------------------------------------------------------------

    def create(self, new: NewKey, actor: str, secret: str | None = None) -> tuple[KeyRecord, str]:
        """Store a new key; returns its record and the secret, which is never retrievable again."""
        validate_new_key(new)
        secret = secret or generate_key()
        with self.database.transaction() as session:
            _bump(session)
            row = _insert(session, new, secret, self._hash(secret), actor)
            record = _record(row)
            audit.append(session, actor, "key.create", record.id, None, _audited(record))
            return record, secret

    def revoke(self, key_id: str, actor: str) -> KeyRecord:
        with self.database.transaction() as session:
            _bump(session)
            row = _load(session, key_id)
            before = _audited(_record(row))
            if row.revoked_at is None:
                row.revoked_at, row.revoked_by = utcnow(), actor
                session.flush()
            record = _record(row)
            audit.append(session, actor, "key.revoke", key_id, before, _audited(record))
            return record

    def set_expiry(self, key_id: str, expires_at: datetime | None, actor: str) -> KeyRecord:
        with self.database.transaction() as session:
            _bump(session)
            row = _load(session, key_id)
            before = _audited(_record(row))
            row.expires_at = expires_at
            session.flush()
            record = _record(row)
            audit.append(session, actor, "key.expire", key_id, before, _audited(record))
            return record

    def ensure_bootstrap(self, actor: str) -> str | None:
        """On an empty key table, create the first admin key: ``MODELYARD_ADMIN_KEY`` if set, else a fresh one.

        Returns the secret only when one was generated here (to print it once). Serialised on the revision row,
        so two replicas starting together create one key, not two.
        """
        supplied = os.environ.get(ADMIN_KEY_ENV) or None
        with self.database.transaction() as session:
            _bump(session)  # takes the row lock (PostgreSQL) before counting
            if session.scalar(select(func.count()).select_from(ApiKeyRow)):
                return None
            secret = supplied or generate_key()
            new = NewKey(BOOTSTRAP_NAME, scopes=(ADMIN, READ, INFERENCE))
            row = _insert(session, new, secret, self._hash(secret), actor)
            audit.append(session, actor, "key.create", row.id, None, _audited(_record(row)) | {"bootstrap": True})
            return None if supplied else secret

    def set_guardrails(self, config: dict[str, Any] | None, actor: str) -> None:
        with self.database.transaction() as session:
            state = _bump(session)
            before = state.guardrails
            state.guardrails = config
            audit.append(session, actor, "guardrails.update", "guardrails", before, config)

    # -- spend ---------------------------------------------------------------------------------------------------

    def add_spend(self, deltas: Iterable[tuple[str, str, int, float, int]]) -> None:
        """Add (key_id, period, tokens, cost, requests) deltas; one transaction per batch, off the hot path."""
        with self.database.transaction() as session:
            for key_id, period, tokens, cost, requests in deltas:
                updated = session.execute(
                    update(KeySpendRow)
                    .where(KeySpendRow.key_id == key_id, KeySpendRow.period == period)
                    .values(
                        tokens=KeySpendRow.tokens + tokens,
                        cost_usd=KeySpendRow.cost_usd + cost,
                        requests=KeySpendRow.requests + requests,
                    )
                )
                if not updated.rowcount:  # type: ignore[attr-defined]
                    session.add(
                        KeySpendRow(key_id=key_id, period=period, tokens=tokens, cost_usd=cost, requests=requests)
                    )
                    session.flush()

    def spend(self, periods: Iterable[str] | None = None, key_id: str | None = None) -> builtins.list[dict[str, Any]]:
        query = select(KeySpendRow).order_by(KeySpendRow.key_id, KeySpendRow.period)
        if periods is not None:
            query = query.where(KeySpendRow.period.in_(list(periods)))
        if key_id is not None:
            query = query.where(KeySpendRow.key_id == key_id)
        with self.database.transaction() as session:
            return [
                {
                    "key_id": r.key_id,
                    "period": r.period,
                    "tokens": r.tokens,
                    "cost_usd": r.cost_usd,
                    "requests": r.requests,
                }
                for r in session.scalars(query)
            ]


def _bump(session: Session) -> SecurityState:
    state = session.scalars(select(SecurityState).where(SecurityState.id == 1).with_for_update()).one()
    state.revision += 1
    return state


def _insert(session: Session, new: NewKey, secret: str, key_hash: str, actor: str) -> ApiKeyRow:
    row = ApiKeyRow(
        id=new_key_id(),
        name=new.name.strip(),
        key_hash=key_hash,
        prefix=display_prefix(secret),
        scopes=sorted(set(new.scopes)),
        models=list(new.models),
        regions=list(new.regions),
        limits=new.limits.to_json(),
        created_by=actor,
        created_at=utcnow(),
        expires_at=new.expires_at,
    )
    session.add(row)
    session.flush()
    return row


def _load(session: Session, key_id: str) -> ApiKeyRow:
    row = session.scalars(select(ApiKeyRow).where(ApiKeyRow.id == key_id).with_for_update()).one_or_none()
    if row is None:
        raise UnknownKey(f"no API key with id '{key_id}'", "id")
    return row


def _record(row: ApiKeyRow) -> KeyRecord:
    return KeyRecord(
        id=row.id,
        name=row.name,
        prefix=row.prefix,
        scopes=list(row.scopes),
        models=list(row.models),
        regions=list(row.regions),
        limits=KeyLimits.from_json(row.limits).to_json(),
        created_by=row.created_by,
        created_at=row.created_at,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
        revoked_by=row.revoked_by,
    )


def _audited(record: KeyRecord) -> dict[str, Any]:
    return {k: v for k, v in record.to_json().items() if k != "status"}


def _grant(row: ApiKeyRow) -> KeyGrant:
    return KeyGrant(
        id=row.id,
        name=row.name,
        scopes=frozenset(row.scopes),
        models=tuple(row.models),
        regions=tuple(row.regions),
        limits=KeyLimits.from_json(row.limits),
        expires_at=row.expires_at.timestamp() if row.expires_at else None,
    )
