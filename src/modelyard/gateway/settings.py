"""What the gateway accepts from clients before any stage looks at a request."""

from __future__ import annotations

from dataclasses import dataclass

from modelyard.options import Section, at_least, option


@dataclass(frozen=True)
class GatewaySettings(Section):
    max_body_bytes: int = option(
        4 * 1024 * 1024,
        flag="--max-body-bytes",
        help="Largest accepted request body in bytes; larger ones get 413.",
        check=at_least(1024),
    )
