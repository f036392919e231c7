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
    max_n: int = option(
        16,
        flag="--max-n",
        help="Largest n (choices per request) accepted; above the engine's own limit the gateway fans out.",
        check=at_least(1),
    )
    max_tool_calls: int = option(
        2,
        flag="--max-tool-calls",
        help="Most parallel tool calls one constrained answer may hold (models without a tool-call template).",
        check=at_least(1),
    )
    queue_max: int = option(
        256,
        flag="--queue-max",
        help="Requests that may wait in the gateway for one replica's slots (its --parallel, or a remote target's "
        "max_concurrency); beyond, 429 queue_full with Retry-After.",
        check=at_least(1),
    )
