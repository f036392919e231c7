"""The stored-responses table: one row per response created with ``store: true``.

``body`` is the Response object as the client received it; ``conversation`` the chat messages that led to it plus
its own output, so a follow-up with ``previous_response_id`` continues from there without re-deriving anything.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from modelyard.store.base import Base, UTCDateTime


class StoredResponseRow(Base):
    __tablename__ = "stored_responses"
    __table_args__ = (Index("ix_stored_responses_expires_at", "expires_at"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # resp_…
    key_id: Mapped[str] = mapped_column(String(32))  # the owning API key ("" when auth is off)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    body: Mapped[dict[str, Any]] = mapped_column(JSON)
    conversation: Mapped[list[Any]] = mapped_column(JSON)
