"""The deployments configuration as one row in the shared database, so every gateway replica serves the same one.

A write replaces the whole text and bumps ``version`` in the same statement; replicas poll ``version`` alone (one
primary-key read) and read the text only when it moved. The row is written only after the text was validated
and applied by the replica that received it, so a stored text is always one a gateway accepted.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import BigInteger, String, Text, func, select
from sqlalchemy.orm import Mapped, mapped_column

from modelyard.store.base import Base, UTCDateTime
from modelyard.store.database import Database

CONFIG_NAME = "default"


class DeploymentsRow(Base):
    __tablename__ = "deployments_config"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger)
    text: Mapped[str] = mapped_column(Text)
    digest: Mapped[str] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_by: Mapped[str] = mapped_column(String(256))


@dataclass(frozen=True)
class StoredDeployments:
    version: int
    text: str
    digest: str
    updated_at: datetime
    updated_by: str


class DeploymentsTable:
    """Read the version, read the whole configuration, write a new one (blocking: call through a thread)."""

    def __init__(self, database: Database, name: str = CONFIG_NAME) -> None:
        self._database = database
        self._name = name

    def version(self) -> int:
        """The stored version (0: nothing stored yet). The cheap read every replica polls."""
        with self._database.transaction() as session:
            found = session.execute(select(DeploymentsRow.version).where(DeploymentsRow.name == self._name))
            return int(found.scalar_one_or_none() or 0)

    def read(self) -> StoredDeployments | None:
        with self._database.transaction() as session:
            row = session.get(DeploymentsRow, self._name)
            if row is None:
                return None
            return StoredDeployments(row.version, row.text, row.digest, row.updated_at, row.updated_by)

    def write(self, text: str, digest: str, actor: str) -> int:
        """Store ``text`` as the new configuration; the version it got. The row is locked for the update, so two
        concurrent writers get two different versions and the later one wins everywhere."""
        with self._database.transaction() as session:
            row = session.get(DeploymentsRow, self._name, with_for_update=True)
            now = _aware(session.execute(select(func.current_timestamp())).scalar_one())  # the database's clock
            if row is None:
                row = DeploymentsRow(name=self._name, version=0, text="", digest="", updated_at=now, updated_by="")
                session.add(row)
            row.version += 1
            row.text, row.digest, row.updated_at, row.updated_by = text, digest, now, actor[:256]
            session.flush()
            return row.version


def _aware(moment: datetime | str) -> datetime:
    if isinstance(moment, str):  # SQLite's CURRENT_TIMESTAMP is text in UTC
        moment = datetime.fromisoformat(moment)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
