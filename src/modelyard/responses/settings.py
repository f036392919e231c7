"""How long stored responses are kept."""

from __future__ import annotations

from dataclasses import dataclass

from modelyard.options import Section, option, positive


@dataclass(frozen=True)
class ResponsesSettings(Section):
    response_retention_s: float = option(
        30 * 24 * 3600.0,
        flag="--response-retention",
        help="Seconds a stored response (Responses API, store=true) is kept for GET and previous_response_id.",
        check=positive,
    )
