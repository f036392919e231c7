"""Leases: exactly one process at a time holds a named lease, kept in the shared database.

Background jobs that must not run twice across replicas (retention, the rollout controller, probes of shared
state) run only while their process holds the job's lease. A holder renews its lease well before it expires; a
holder that dies stops renewing and another process acquires the lease once it has expired (within ``ttl_s``). A
holder that cannot reach the database, or finds the lease taken over, loses it at once and stops its job: two
holders are never told they hold it, because every acquisition and renewal is one conditional write decided by the
database's clock, not the callers'.

    keeper = LeaseKeeper(database, "request-log-retention", holder=f"{hostname}:{pid}", ttl_s=5)
    await keeper.run(job)   # job() runs while held; cancelled when the lease is lost; retried when regained
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import String, case, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Mapped, mapped_column

from modelyard.store.base import Base, UTCDateTime
from modelyard.store.database import Database, StoreUnavailable

log = logging.getLogger("modelyard.store")


class LeaseRow(Base):
    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    holder: Mapped[str] = mapped_column(String(256))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    acquired_at: Mapped[datetime] = mapped_column(UTCDateTime())


@dataclass(frozen=True)
class LeaseState:
    name: str
    holder: str
    expires_at: datetime
    acquired_at: datetime


class Leases:
    """The lease table: acquire-or-renew as one statement, release, read."""

    def __init__(self, database: Database) -> None:
        self._database = database

    def acquire(self, name: str, holder: str, ttl_s: float) -> bool:
        """Take ``name`` for ``holder`` (or renew it if ``holder`` already has it) unless someone else holds an
        unexpired lease. True when ``holder`` holds it afterwards."""
        with self._database.transaction() as session:
            now = _aware(session.execute(select(func.current_timestamp())).scalar_one())  # the database's clock
            expires = now + timedelta(seconds=ttl_s)
            dialect = self._database.engine.dialect.name
            insert = pg_insert if dialect == "postgresql" else sqlite_insert
            statement = insert(LeaseRow).values(name=name, holder=holder, expires_at=expires, acquired_at=now)
            taken = (LeaseRow.holder == holder) | (LeaseRow.expires_at < now)
            acquired_at = case((LeaseRow.holder == holder, LeaseRow.acquired_at), else_=now)  # kept on a renewal
            statement = statement.on_conflict_do_update(
                index_elements=[LeaseRow.name],
                set_={"holder": holder, "expires_at": expires, "acquired_at": acquired_at},
                where=taken,
            )
            session.execute(statement)
            current = session.get(LeaseRow, name)
            return current is not None and current.holder == holder

    def release(self, name: str, holder: str) -> None:
        """Give the lease up now (on a clean stop), so another process need not wait for it to expire."""
        with self._database.transaction() as session:
            session.execute(
                update(LeaseRow)
                .where(LeaseRow.name == name, LeaseRow.holder == holder)
                .values(expires_at=func.current_timestamp() - timedelta(seconds=1))
            )

    def read(self, name: str) -> LeaseState | None:
        with self._database.transaction() as session:
            row = session.get(LeaseRow, name)
            if row is None:
                return None
            return LeaseState(row.name, row.holder, _aware(row.expires_at), _aware(row.acquired_at))


class LeaseKeeper:
    """Holds one named lease for this process while it can, and runs a job only while it holds it."""

    def __init__(self, database: Database, name: str, holder: str, ttl_s: float = 5.0) -> None:
        self.name = name
        self.holder = holder
        self.ttl_s = ttl_s
        self.held = False
        self._leases = Leases(database)

    async def run(self, job: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Forever: try to acquire; while held, run ``job`` and renew every third of the TTL; when the lease is
        lost (taken over, expired, database unreachable), cancel ``job`` and try again."""
        try:
            while True:
                if await self._try():
                    await self._hold(job)
                await asyncio.sleep(self.ttl_s / 3)
        finally:
            if self.held:
                self.held = False
                with contextlib.suppress(StoreUnavailable):
                    await asyncio.to_thread(self._leases.release, self.name, self.holder)

    async def _try(self) -> bool:
        try:
            held = await asyncio.to_thread(self._leases.acquire, self.name, self.holder, self.ttl_s)
        except StoreUnavailable as exc:
            log.warning("lease %s: database unreachable (%s); not holding it", self.name, exc)
            held = False
        if held != self.held:
            log.info("lease %s %s by %s", self.name, "acquired" if held else "lost", self.holder)
        self.held = held
        return held

    async def _hold(self, job: Callable[[], Coroutine[Any, Any, None]]) -> None:
        task = asyncio.create_task(job(), name=f"lease-job-{self.name}")
        try:
            while not task.done():
                done, _ = await asyncio.wait({task}, timeout=self.ttl_s / 3)
                if done or not await self._try():
                    break
        finally:
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            elif not task.cancelled() and task.exception() is not None:
                log.error("lease job %s failed: %s", self.name, task.exception())


def _aware(moment: datetime | str) -> datetime:
    if isinstance(moment, str):  # SQLite's CURRENT_TIMESTAMP is text in UTC
        moment = datetime.fromisoformat(moment)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
