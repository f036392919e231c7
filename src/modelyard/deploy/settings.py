"""How the control plane follows the registry and the deployments file, and retires engines."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from modelyard.deploy.discovery import check_engine_urls
from modelyard.options import Section, between, non_negative, option


@dataclass(frozen=True)
class ControlSettings(Section):
    deployments_path: Path | None = option(
        None,
        flag="--config",
        env="MODELYARD_DEPLOYMENTS",
        help="Deployments file: declared routes and their policies (docs/routing.md); applied and stored in the "
        "database when newer than the stored configuration, and when it changes.",
    )
    deployments_poll_s: float = option(
        0.25,
        flag="--deployments-poll",
        help="Seconds between checks of the stored deployments version (a change through another replica).",
        check=between(0.05, 60),
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


@dataclass(frozen=True)
class FleetSettings(Section):
    """Where ``modelyard gateway`` finds the engines it does not launch."""

    engine_urls: tuple[str, ...] = option(
        (),
        flag="--engine-url",
        env="MODELYARD_ENGINE_URLS",
        help="Engines of a registry version, NAME:VERSION=URL[,URL...]; dns+http://NAME:PORT resolves NAME's "
        "A/AAAA records (a headless Service) into one replica each. Repeatable.",
        check=check_engine_urls,
    )
    discovery_s: float = option(
        2.0,
        flag="--discovery-interval",
        help="Seconds between re-resolving the engines' DNS names and health-checking every engine.",
        check=between(0.1, 300),
    )
    engine_slots: int = option(
        8,
        flag="--engine-slots",
        help="Slots of each engine (the most choices, n, one call may ask for).",
        check=between(1, 512),
    )
