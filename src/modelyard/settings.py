"""Settings for ``modelyard serve``, validated once at start-up.

Every field can come from a command-line flag or a ``MODELYARD_*`` environment variable (the CLI maps both);
this module only holds the values and checks that they make sense together.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from modelyard.observability.body_policy import BodyPolicy, BodyPolicyError


class SettingsError(ValueError):
    pass


@dataclass(frozen=True)
class ServeSettings:
    host: str = "127.0.0.1"
    port: int = 8080
    model_path: Path | None = None  # None: the default model, assembled from its PyPI packages
    model_name: str | None = None  # None: derived from the file name (or gemma-3-270m for the default)
    context_size: int = 16384
    parallel: int = 8
    threads: int | None = None
    embeddings: bool = False
    max_body_bytes: int = 4 * 1024 * 1024
    shutdown_grace_s: float = 30.0
    engine_ready_timeout_s: float = 120.0
    engine_restart_backoff_s: float = 1.0
    drain_timeout_s: float = 300.0  # how long a retired engine's in-flight requests may take to finish
    registry_poll_s: float = 1.0  # how often the registry is checked for alias moves
    log_level: str = "info"
    log_format: str = "text"  # or "json"
    log_requests: bool = True  # one log line per request (JSON with --log-format json)
    request_log: bool = True  # store every request's metadata (SQLite/PostgreSQL) through a bounded queue
    request_log_queue: int = 10_000
    request_log_retention_days: float = 30.0
    request_log_body_retention_days: float = 7.0
    request_log_bodies: tuple[str, ...] = ()  # ROUTE_GLOB=RATE rules; bodies are kept only where one matches
    otlp_endpoint: str | None = None  # else OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT; neither: no spans
    deployments_path: Path | None = None  # the deployments file (--config); None: registry ids only
    # -- security (docs/security.md) --
    auth: bool = True  # off only when asked explicitly; warned about at start and in /ready
    region: str = ""  # this gateway's region, for keys restricted to regions
    metrics_auth: bool = False  # /metrics needs a key with the read scope
    redis_url: str | None = None  # shared rate limits and budgets across replicas
    redis_prefix: str = "modelyard"
    ratelimit_fail_mode: str = "open"  # Redis unreachable: "open" (serve unlimited) or "closed" (503)
    guardrails_file: Path | None = None
    key_poll_s: float = 0.25  # how often the key revision is polled (revocation reaches every replica in < 1 s)

    def __post_init__(self) -> None:
        if not 0 < self.port < 65536:
            raise SettingsError(f"port must be between 1 and 65535, got {self.port}")
        if self.context_size < 256:
            raise SettingsError(f"context size must be at least 256 tokens, got {self.context_size}")
        if self.parallel < 1:
            raise SettingsError(f"parallel must be at least 1, got {self.parallel}")
        if self.context_size // self.parallel < 128:
            raise SettingsError(
                f"context size {self.context_size} split over {self.parallel} slots leaves under 128 tokens each"
            )
        if self.threads is not None and self.threads < 1:
            raise SettingsError(f"threads must be at least 1, got {self.threads}")
        if self.max_body_bytes < 1024:
            raise SettingsError(f"max body size must be at least 1024 bytes, got {self.max_body_bytes}")
        if not 0.05 <= self.registry_poll_s <= 60:
            raise SettingsError(f"registry poll interval must be between 0.05 and 60 s, got {self.registry_poll_s}")
        if self.shutdown_grace_s < 0 or self.engine_restart_backoff_s < 0 or self.drain_timeout_s < 0:
            raise SettingsError("grace and back-off durations cannot be negative")
        if self.request_log_queue < 1:
            raise SettingsError(f"request log queue must hold at least 1 record, got {self.request_log_queue}")
        if self.request_log_retention_days <= 0 or self.request_log_body_retention_days <= 0:
            raise SettingsError("request log retention periods must be positive (days)")
        try:
            BodyPolicy.parse(self.request_log_bodies)
        except BodyPolicyError as exc:
            raise SettingsError(str(exc)) from None
        if self.ratelimit_fail_mode not in ("open", "closed"):
            raise SettingsError(f"rate-limit fail mode must be 'open' or 'closed', got {self.ratelimit_fail_mode!r}")
        if not 0.05 <= self.key_poll_s <= 10:
            raise SettingsError(f"key poll interval must be between 0.05 and 10 s, got {self.key_poll_s}")
        if self.redis_url is not None and not self.redis_url.startswith(("redis://", "rediss://", "unix://")):
            raise SettingsError(f"redis URL must start with redis://, rediss:// or unix://, got {self.redis_url!r}")
        if self.model_name is not None and not self.model_name.strip():
            raise SettingsError("model name cannot be empty")
