"""Turning filter text (CLI options, admin query strings) into a :class:`RequestQuery`, identically for both."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from modelyard.observability.request_log_store import RequestQuery

_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
_STATUS = re.compile(r"^(\d{3}|[1-5]xx)$")


class QueryError(ValueError):
    def __init__(self, message: str, param: str) -> None:
        super().__init__(message)
        self.param = param


def parse_time(text: str, now: datetime, param: str) -> datetime:
    """``15m``, ``2h``, ``7d`` (that long ago) or an ISO 8601 timestamp (UTC unless it says otherwise)."""
    relative = _RELATIVE.match(text.strip())
    if relative:
        return now - timedelta(**{_UNITS[relative.group(2)]: float(relative.group(1))})
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise QueryError(f"{param} must be like 15m, 2h, 7d or an ISO timestamp, got {text!r}", param) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def build_query(filters: dict[str, str], now: datetime | None = None, default_limit: int = 100) -> RequestQuery:
    now = now or datetime.now(UTC)
    known = {"route", "model", "version", "key", "status", "since", "until", "limit", "bodies", "shadow"}
    unknown = set(filters) - known
    if unknown:
        name = sorted(unknown)[0]
        raise QueryError(
            f"unknown filter {name!r} (use route, model, version, key, status, since, until, limit, shadow)", name
        )
    shadow = filters.get("shadow")
    if shadow is not None and shadow.lower() not in ("true", "false"):
        raise QueryError(
            f"shadow must be true (only shadow copies) or false (only client requests), got {shadow!r}", "shadow"
        )
    status = filters.get("status")
    if status is not None and not _STATUS.match(status):
        raise QueryError(f"status must be a code like 200 or a class like 5xx, got {status!r}", "status")
    try:
        limit = int(filters.get("limit", default_limit))
    except ValueError:
        raise QueryError("limit must be an integer", "limit") from None
    if limit < 0:
        raise QueryError("limit cannot be negative", "limit")
    return RequestQuery(
        route=filters.get("route"),
        model=filters.get("model"),
        version=filters.get("version"),
        status=status,
        since=parse_time(filters["since"], now, "since") if "since" in filters else None,
        until=parse_time(filters["until"], now, "until") if "until" in filters else None,
        limit=limit,
        with_bodies=filters.get("bodies", "false").lower() in ("1", "true", "yes"),
        shadow=None if shadow is None else shadow.lower() == "true",
        key_id=filters.get("key") or None,
    )
