"""Prometheus metrics for the gateway.

Each gateway owns its registry (no global default registry), so tests and several apps in one process never
share counters. Labels are bounded: model names come from the catalog (unknown names are folded into
``_unknown``), endpoints and status codes are finite sets; prompts and user ids never become labels.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

UNKNOWN_MODEL = "_unknown"

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 80, 160)
TTFT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20)


class GatewayMetrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self._restarts_seen: dict[str, int] = {}
        # Labelled children looked up once per label set: ``labels()`` validates and locks on every call, which
        # showed in hot-path profiles. Bounded like the labels themselves (catalog models x endpoints x statuses).
        self._request_children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}
        self._token_children: dict[str, tuple[Counter, Counter]] = {}
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "modelyard_requests",
            "Inference requests by model, endpoint and HTTP status.",
            ("model", "endpoint", "status"),
            registry=r,
        )
        self.request_duration = Histogram(
            "modelyard_request_duration_seconds",
            "End-to-end request latency as seen by the gateway.",
            ("model", "endpoint"),
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.time_to_first_token = Histogram(
            "modelyard_time_to_first_token_seconds",
            "Time from request arrival to the first generated token forwarded to the client (streaming).",
            ("model", "endpoint"),
            buckets=TTFT_BUCKETS,
            registry=r,
        )
        self.prompt_tokens = Counter(
            "modelyard_prompt_tokens", "Prompt (input) tokens reported by the engine.", ("model",), registry=r
        )
        self.completion_tokens = Counter(
            "modelyard_completion_tokens",
            "Completion (output) tokens reported by the engine.",
            ("model",),
            registry=r,
        )
        self.in_flight = Gauge("modelyard_requests_in_flight", "Inference requests being processed.", registry=r)
        self.engine_up = Gauge(
            "modelyard_engine_up", "1 when the engine answers its health check, else 0.", ("engine",), registry=r
        )
        self.engine_restarts = Counter(
            "modelyard_engine_restarts", "Times the supervisor restarted an engine.", ("engine",), registry=r
        )

    def observe_request(self, model: str, endpoint: str, status: int, seconds: float) -> None:
        key = (model, endpoint, status)
        children = self._request_children.get(key)
        if children is None:
            children = self._request_children[key] = (
                self.requests.labels(model, endpoint, str(status)),
                self.request_duration.labels(model, endpoint),
            )
        children[0].inc()
        children[1].observe(seconds)

    def observe_first_token(self, model: str, endpoint: str, seconds: float) -> None:
        self.time_to_first_token.labels(model, endpoint).observe(seconds)

    def observe_usage(self, model: str, prompt_tokens: int, completion_tokens: int) -> None:
        children = self._token_children.get(model)
        if children is None:
            children = self._token_children[model] = (
                self.prompt_tokens.labels(model),
                self.completion_tokens.labels(model),
            )
        if prompt_tokens:
            children[0].inc(prompt_tokens)
        if completion_tokens:
            children[1].inc(completion_tokens)

    def engine_state_changed(self, engine: str, ready: bool, restarts: int) -> None:
        self.engine_up.labels(engine).set(1 if ready else 0)
        missing = restarts - self._restarts_seen.get(engine, 0)
        if missing > 0:
            self.engine_restarts.labels(engine).inc(missing)
            self._restarts_seen[engine] = restarts

    def render(self) -> bytes:
        return generate_latest(self.registry)
