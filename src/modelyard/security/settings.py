"""Who may call the gateway and how much: keys, limits across replicas, guardrails."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from modelyard.options import Section, between, on_off, option, prefixed


@dataclass(frozen=True)
class SecuritySettings(Section):
    auth: bool = option(
        True,
        flag="--auth",
        parse=on_off,
        choices=("on", "off"),
        help="API keys required: on, or off (serves without keys; warned about at start and in /ready).",
    )
    region: str = option("", flag="--region", help="This gateway's region, checked against keys' allowed regions.")
    metrics_auth: bool = option(False, flag="--metrics-auth", help="/metrics needs a key with the read scope.")
    redis_url: str | None = option(
        None,
        flag="--redis-url",
        help="Redis for rate limits, concurrency and budgets shared by replicas (else per-replica memory).",
        check=prefixed("redis://", "rediss://", "unix://"),
    )
    redis_prefix: str = option("modelyard", flag="--redis-prefix", help="Prefix of every Redis key.")
    ratelimit_fail_mode: str = option(
        "open",
        flag="--ratelimit-fail-mode",
        help="Redis unreachable: open (serve unlimited) or closed (503); logged and counted either way.",
        choices=("open", "closed"),
    )
    redis_timeout_s: float = option(
        0.25,
        flag="--redis-timeout",
        help="Seconds a Redis limit call may take before the fail mode applies.",
        check=between(0.01, 10),
    )
    guardrails_file: Path | None = option(
        None,
        flag="--guardrails",
        help="YAML/JSON guardrails and request limits per route (docs/security.md#guardrails); reloaded when it "
        "changes (a file that does not validate is refused, the running one kept).",
    )
    key_poll_s: float = option(
        0.25,
        flag="--key-poll",
        help="Seconds between key revision checks (revocation reaches every replica within about one poll).",
        check=between(0.05, 10),
    )

    @property
    def metrics_public(self) -> bool:
        return not self.metrics_auth
