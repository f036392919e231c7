"""A finished request as one flat row: the request-log table's columns, and the values of its log line.

Both the stored row and the log line report the same numbers (milliseconds rounded to the microsecond), so the
record writer computes them once per request and formats the line from the row. This runs once per request in
the record writer process, so it is written for speed: plain arithmetic instead of the record's properties, and
the timestamp's text reused within each second.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from modelyard.observability.body_policy import clip_body
from modelyard.observability.request_log_table import RequestLogRow
from modelyard.observability.request_record import RequestRecord

COLUMNS = tuple(c.name for c in RequestLogRow.__table__.columns if c.name != "id")
DURATION_MS = COLUMNS.index("duration_ms")
SHADOW_OF = COLUMNS.index("shadow_of")


class RowBuilder:
    """``timestamp_as_text``: SQLite, which stores the arrival time as the text its datetime adapter writes
    (``2026-11-24 01:34:08.584134+00:00``, read back as UTC by the ORM); PostgreSQL takes the datetime."""

    def __init__(self, timestamp_as_text: bool) -> None:
        self._text = timestamp_as_text
        self._second = -1
        self._prefix = ""

    def row(self, r: RequestRecord) -> tuple[Any, ...]:
        """The row in ``COLUMNS`` order (a test checks it against the table, column by column)."""
        received = r.received
        duration = (r.finished or received) - received
        dispatched, first, last, tokens = r.dispatched, r.first_token, r.last_token, r.completion_tokens
        tpot = (last - first) / (tokens - 1) if first is not None and last is not None and tokens >= 2 else None
        return (
            r.request_id,
            r.trace_id,
            self._timestamp(r.received_at),
            r.endpoint,
            r.route,
            r.model,
            r.version,
            r.target,
            r.stream,
            r.status,
            r.error_type or None,
            round(duration * 1000, 3),
            None if dispatched is None else round((dispatched - received) * 1000, 3),
            None if first is None else round((first - received) * 1000, 3),
            None if tpot is None else round(tpot * 1000, 3),
            r.prompt_tokens,
            tokens,
            r.attempts,
            round(r.cost_usd, 8),
            None if r.request_body is None else clip_body(r.request_body),
            None if r.response_body is None else clip_body(r.response_body),
            r.shadow_of,
            r.outputs_match,
            r.similarity,
            r.key_id or None,
        )

    def _timestamp(self, epoch: float) -> str | datetime:
        if not self._text:
            return datetime.fromtimestamp(epoch, UTC)
        # Exactly what datetime.fromtimestamp does: the fraction rounded half-even to the microsecond.
        second = math.floor(epoch)
        micro = round((epoch - second) * 1_000_000)
        if micro >= 1_000_000:
            second, micro = second + 1, micro - 1_000_000
        if second != self._second:
            self._second = second
            self._prefix = datetime.fromtimestamp(second, UTC).isoformat(" ").removesuffix("+00:00")
        return f"{self._prefix}.{micro:06d}+00:00" if micro else f"{self._prefix}+00:00"
