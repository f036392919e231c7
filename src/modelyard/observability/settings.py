"""Logs, the request log and traces: what is recorded about each request and where it goes."""

from __future__ import annotations

from dataclasses import dataclass

from modelyard.observability.body_policy import BodyPolicy, BodyPolicyError
from modelyard.options import Section, SettingsError, at_least, option, positive

LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")


@dataclass(frozen=True)
class ObservabilitySettings(Section):
    log_level: str = option("info", flag="--log-level", help="Gateway log level.", choices=LOG_LEVELS)
    log_format: str = option(
        "text", flag="--log-format", help="text, or json (one object per line).", choices=("text", "json")
    )
    log_requests: bool = option(True, flag="--log-requests", help="One log line per request.")
    request_log: bool = option(True, flag="--request-log", help="Store every request's metadata in the database.")
    request_log_queue: int = option(
        10_000,
        flag="--request-log-queue",
        help="Finished requests not yet logged and stored (in the gateway or the record writer process) before new "
        "ones are dropped (and counted).",
        check=at_least(1),
    )
    request_log_retention_days: float = option(
        30.0,
        flag="--request-log-retention-days",
        help="Request-log rows older than this many days are deleted (hourly).",
        check=positive,
    )
    request_log_body_retention_days: float = option(
        7.0,
        flag="--request-log-body-retention-days",
        help="Stored bodies older than this many days are cleared.",
        check=positive,
    )
    request_log_bodies: tuple[str, ...] = option(
        (),
        flag="--request-log-bodies",
        help="ROUTE_GLOB=RATE (repeatable): keep prompt/response bodies for that share of matching requests.",
    )
    otlp_endpoint: str | None = option(
        None,
        flag="--otlp-endpoint",
        help="OTLP/HTTP collector for traces (OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT also work).",
    )

    def check(self) -> None:
        try:
            BodyPolicy.parse(self.request_log_bodies)
        except BodyPolicyError as exc:
            raise SettingsError(str(exc)) from None

    @property
    def bodies(self) -> BodyPolicy:
        return BodyPolicy.parse(self.request_log_bodies)
