"""User feedback on served answers: validated (pure), stored once per request id, joined to the arm that served it.

A client rates an answer by the request id the gateway gave it (the ``x-request-id`` header). The score is a
thumb (``"up"`` / ``"down"``) or a number in the scale the operator declared (``--feedback-min`` ..
``--feedback-max``); it is stored scaled to 0..1 (1 = best) so that experiments compare feedback the same way
whatever the scale. A second rating of the same request replaces the first (one row per request id, written as
one upsert), and only the key that made the request, or an admin key, may rate it.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from modelyard.observability.request_log_table import RequestLogRow
from modelyard.rollouts.tables import FeedbackRow
from modelyard.store.database import Database

MAX_COMMENT = 4000


class FeedbackError(Exception):
    """Bad feedback input, naming the field."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


class UnknownRequest(Exception):
    def __init__(self, request_id: str) -> None:
        super().__init__(
            f"No request with id '{request_id}' is in the request log (give the x-request-id of an answer this "
            "gateway served; it is stored within a second of the answer)."
        )
        self.request_id = request_id


class NotYourRequest(Exception):
    def __init__(self, request_id: str) -> None:
        super().__init__(
            f"Request '{request_id}' was made with another API key; only that key or an admin may rate it."
        )
        self.request_id = request_id


@dataclass(frozen=True)
class FeedbackScale:
    low: float = 1.0
    high: float = 5.0

    def scaled(self, value: float) -> float:
        return (value - self.low) / (self.high - self.low)


@dataclass(frozen=True)
class FeedbackInput:
    request_id: str
    score: float  # 0..1
    raw: str
    comment: str | None


def parse_feedback(body: dict[str, Any], scale: FeedbackScale) -> FeedbackInput:
    """Validate a feedback body: ``request_id`` (required), ``score`` (``"up"``, ``"down"`` or a number within the
    scale), ``comment`` (optional text). Unknown fields are refused, so a typo is not silently dropped."""
    unknown = sorted(set(body) - {"request_id", "score", "comment"})
    if unknown:
        raise FeedbackError(f"Unknown field '{unknown[0]}': feedback takes request_id, score and comment.", unknown[0])
    request_id = body.get("request_id")
    if not isinstance(request_id, str) or not request_id.strip():
        raise FeedbackError("'request_id' is required: the x-request-id header of the answer you rate.", "request_id")
    if len(request_id) > 128:
        raise FeedbackError("'request_id' is longer than 128 characters.", "request_id")
    score = body.get("score")
    if score is None:
        raise FeedbackError('\'score\' is required: "up", "down" or a number.', "score")
    if isinstance(score, str):
        thumbs = {"up": 1.0, "down": 0.0}
        if score not in thumbs:
            raise FeedbackError(f"'score' must be \"up\", \"down\" or a number, not '{score[:40]}'.", "score")
        value, raw = thumbs[score], score
    elif isinstance(score, bool) or not isinstance(score, int | float) or not math.isfinite(score):
        raise FeedbackError('\'score\' must be "up", "down" or a number.', "score")
    else:
        if not scale.low <= score <= scale.high:
            raise FeedbackError(
                f"'score' {score} is outside the declared range {scale.low:g}..{scale.high:g}.", "score"
            )
        value, raw = scale.scaled(float(score)), f"{score:g}"
    comment = body.get("comment")
    if comment is not None and not isinstance(comment, str):
        raise FeedbackError("'comment' must be a string.", "comment")
    if comment is not None and len(comment) > MAX_COMMENT:
        raise FeedbackError(f"'comment' is longer than {MAX_COMMENT} characters.", "comment")
    return FeedbackInput(request_id.strip(), value, raw, comment)


@dataclass(frozen=True)
class Feedback:
    request_id: str
    route: str
    model: str
    version: str
    target: str
    score: float
    raw: str
    comment: str | None
    created_at: datetime
    updated_at: datetime

    def to_json(self) -> dict[str, Any]:
        return {
            "object": "feedback",
            "request_id": self.request_id,
            "route": self.route,
            "model": self.model,
            "version": self.version,
            "target": self.target,
            "score": self.score,
            "raw": self.raw,
            "comment": self.comment,
            "created_at": _iso(self.created_at),
            "updated_at": _iso(self.updated_at),
        }


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


class FeedbackStore:
    """Feedback rows, written from worker threads (never on the event loop)."""

    def __init__(self, database: Database) -> None:
        self._database = database

    def submit(self, given: FeedbackInput, key_id: str, admin: bool) -> Feedback:
        """Store (or replace) the rating of one served request. ``key_id`` is the caller's key ("" with auth
        off); ``admin`` lets an admin key rate any request."""
        with self._database.transaction() as session:
            served = session.execute(
                select(RequestLogRow)
                .where(RequestLogRow.request_id == given.request_id, RequestLogRow.shadow_of.is_(None))
                .order_by(RequestLogRow.id.desc())
                .limit(1)
            ).scalar_one_or_none()
            if served is None:
                raise UnknownRequest(given.request_id)
            if not admin and (served.key_id or "") != key_id:
                raise NotYourRequest(given.request_id)
            now = datetime.now(UTC)
            values = {
                "request_id": given.request_id,
                "key_id": key_id,
                "route": served.route,
                "model": served.model,
                "version": served.version,
                "target": served.target,
                "score": given.score,
                "raw": given.raw,
                "comment": given.comment,
                "created_at": now,
                "updated_at": now,
            }
            insert = pg_insert if self._database.engine.dialect.name == "postgresql" else sqlite_insert
            replace = {k: v for k, v in values.items() if k not in ("request_id", "created_at")}
            session.execute(
                insert(FeedbackRow).values(**values).on_conflict_do_update(index_elements=["request_id"], set_=replace)
            )
            row = session.get(FeedbackRow, given.request_id, populate_existing=True)
            assert row is not None  # just written in this transaction
            return _feedback(row)

    def get(self, request_id: str) -> Feedback | None:
        with self._database.transaction() as session:
            row = session.get(FeedbackRow, request_id)
            return _feedback(row) if row is not None else None

    def rated(
        self,
        route: str | None = None,
        model: str | None = None,
        version: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> Iterator[tuple[dict[str, Any], Feedback]]:
        """Each rated request (oldest rating first) with its request-log row, bodies included when kept."""
        statement = (
            select(FeedbackRow, RequestLogRow)
            .join(RequestLogRow, RequestLogRow.request_id == FeedbackRow.request_id)
            .where(RequestLogRow.shadow_of.is_(None))
        )
        for column, value in ((FeedbackRow.route, route), (FeedbackRow.model, model), (FeedbackRow.version, version)):
            if value is not None:
                statement = statement.where(column == value)
        if since is not None:
            statement = statement.where(RequestLogRow.received_at >= since)
        if until is not None:
            statement = statement.where(RequestLogRow.received_at < until)
        with self._database.transaction() as session:
            for feedback_row, log_row in session.execute(statement.order_by(FeedbackRow.updated_at)).yield_per(500):
                yield _log_dict(log_row), _feedback(feedback_row)


def _log_dict(row: RequestLogRow) -> dict[str, Any]:
    return {
        "request_id": row.request_id,
        "endpoint": row.endpoint,
        "stream": row.stream,
        "status": row.status,
        "request_body": row.request_body,
        "response_body": row.response_body,
    }


def _feedback(row: FeedbackRow) -> Feedback:
    return Feedback(
        row.request_id,
        row.route,
        row.model,
        row.version,
        row.target,
        row.score,
        row.raw,
        row.comment,
        row.created_at,
        row.updated_at,
    )
