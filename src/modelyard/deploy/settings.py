"""How the control plane follows the registry and the deployments file, and retires engines."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from modelyard.options import Section, between, non_negative, option


@dataclass(frozen=True)
class ControlSettings(Section):
    deployments_path: Path | None = option(
        None,
        flag="--config",
        env="MODELYARD_DEPLOYMENTS",
        help="Deployments file: declared routes and their policies (docs/routing.md); re-read when it changes.",
    )
    registry_poll_s: float = option(
        1.0,
        flag="--registry-poll",
        help="Seconds between checks for registry changes (alias moves by the CLI or another replica).",
        check=between(0.05, 60),
    )
    drain_timeout_s: float = option(
        300.0,
        flag="--drain-timeout",
        help="Seconds a version that lost its alias keeps serving its in-flight requests before its engine stops.",
        check=non_negative,
    )
