"""Tables of the Batch API: files (uploaded input, produced output and error files), batches, and one row per
input line so a batch resumes after a restart without redoing the lines that finished.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Index, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from modelyard.store.base import Base, UTCDateTime


class FileRow(Base):
    __tablename__ = "batch_files"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # file-…
    key_id: Mapped[str] = mapped_column(String(32))
    purpose: Mapped[str] = mapped_column(String(32))  # batch | batch_output
    filename: Mapped[str] = mapped_column(String(256))
    size: Mapped[int] = mapped_column("bytes", Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    content: Mapped[bytes] = mapped_column(LargeBinary)


class BatchRow(Base):
    __tablename__ = "batches"
    __table_args__ = (Index("ix_batches_status", "status"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # batch_…
    key_id: Mapped[str] = mapped_column(String(32))
    endpoint: Mapped[str] = mapped_column(String(64))
    input_file_id: Mapped[str] = mapped_column(String(64))
    completion_window: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))  # validating | in_progress | finalizing | completed | …
    priority: Mapped[str] = mapped_column(String(16), default="batch")  # the priority class its lines run at
    total: Mapped[int] = mapped_column(Integer, default=0)
    completed: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)
    output_file_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    error_file_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    metadata_: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSON, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    in_progress_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    finalizing_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    cancelling_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class BatchLineRow(Base):
    __tablename__ = "batch_lines"
    __table_args__ = (Index("ix_batch_lines_batch_id_done", "batch_id", "done"),)

    batch_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    line: Mapped[int] = mapped_column(Integer, primary_key=True)  # 1-based line number in the input file
    custom_id: Mapped[str] = mapped_column(String(256))
    body: Mapped[dict[str, Any]] = mapped_column(JSON)
    done: Mapped[int] = mapped_column(Integer, default=0)  # 0 pending, 1 answered
    status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    request_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    response: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
