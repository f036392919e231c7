"""The engine knobs ``modelyard serve`` applies to every llama-server it launches, and how it restarts them."""

from __future__ import annotations

from dataclasses import dataclass

from modelyard.options import Section, SettingsError, at_least, non_negative, option, positive


@dataclass(frozen=True)
class EngineSettings(Section):
    context_size: int = option(
        16384, flag="--ctx-size", help="Engine context, shared by all slots.", check=at_least(256)
    )
    parallel: int = option(
        8, flag="--parallel", help="Engine slots decoded together (continuous batching).", check=at_least(1)
    )
    threads: int | None = option(
        None,
        flag="--threads",
        help="Engine CPU threads (default: llama.cpp's choice, the CPU count).",
        check=at_least(1),
    )
    embeddings: bool = option(
        False,
        flag="--embeddings",
        help="Run the engine in embedding mode (for embedding models; enables /v1/embeddings).",
    )
    engine_restart_backoff_s: float = option(
        1.0,
        flag="--restart-backoff",
        help="First engine restart delay in seconds; doubles per crash up to 30 s, resets after 60 s of uptime.",
        check=non_negative,
    )
    engine_ready_timeout_s: float = option(
        120.0,
        flag="--engine-ready-timeout",
        help="Seconds an engine may take to load before it counts as failed.",
        check=positive,
    )
    engine_health_interval_s: float = option(
        5.0,
        flag="--engine-health-interval",
        help="Seconds between health checks of a running engine (each waits at most this long, 5 s at most).",
        check=positive,
    )
    engine_health_failures: int = option(
        3,
        flag="--engine-health-failures",
        help="Failed health checks in a row after which a hung engine is killed (SIGKILL) and restarted.",
        check=at_least(1),
    )

    def check(self) -> None:
        if self.context_size // self.parallel < 128:
            raise SettingsError(
                f"context size {self.context_size} split over {self.parallel} slots leaves under 128 tokens each"
            )

    @property
    def slot_context(self) -> int:
        """Tokens one request may use: the engine's context is split evenly over its slots."""
        return self.context_size // self.parallel
