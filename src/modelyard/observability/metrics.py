"""Prometheus metrics for the gateway (names, types, units and labels are documented in docs/observability.md).

Each gateway owns its registry (no global default registry), so tests and several apps in one process never
share series. Labels are bounded: ``route`` is a model id from the catalog (unresolved ids are folded into
``_unknown``), ``model``/``version``/``target`` come from the registry, ``endpoint``, ``status_class`` and
``error_type`` are finite sets; prompts, users and keys never become labels.

Where the OpenTelemetry GenAI semantic conventions define a metric the meaning is kept:
``modelyard_time_to_first_token_seconds`` is ``gen_ai.server.time_to_first_token``,
``modelyard_time_per_output_token_seconds`` is ``gen_ai.server.time_per_output_token`` and
``modelyard_token_usage`` (with ``token_type`` = input | output) is ``gen_ai.client.token.usage``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from modelyard.observability.fast_metrics import CounterChild, FastCounter, FastHistogram
from modelyard.observability.request_record import RequestRecord

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 80, 160)
TTFT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20)
TPOT_BUCKETS = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.25, 0.5, 1)
TOKENS_PER_S_BUCKETS = (1, 2.5, 5, 10, 20, 35, 50, 75, 100, 150, 250, 500, 1000, 2500)
TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144)
QUEUE_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1)

REQUEST_LABELS = ("route", "model", "version", "endpoint")
LabelKey = tuple[str, str, str, str]


class _RequestSeries:
    """The labelled children of one (route, model, version, endpoint), looked up once: ``labels()`` validates and
    locks on every call, which showed in hot-path profiles."""

    __slots__ = ("by_status", "cost", "duration", "input_tokens", "output_tokens", "queue", "tpot", "tps", "ttft")

    def __init__(self, metrics: GatewayMetrics, key: LabelKey) -> None:
        route, model, version, _endpoint = key
        self.by_status: dict[tuple[int, str], tuple[CounterChild, CounterChild | None]] = {}
        self.duration = metrics.request_duration.labels(*key)
        self.queue = metrics.queue_time.labels(route, model, version)
        self.ttft = metrics.time_to_first_token.labels(*key)
        self.tpot = metrics.time_per_output_token.labels(route, model, version)
        self.tps = metrics.output_tokens_per_second.labels(route, model, version)
        self.input_tokens = metrics.token_usage.labels(route, model, version, "input")
        self.output_tokens = metrics.token_usage.labels(route, model, version, "output")
        self.cost = metrics.cost.labels(route, model, version)


class GatewayMetrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self._restarts_seen: dict[str, int] = {}
        self._kinds: dict[str, str] = {}  # engine → its kind, for removing its cold-start series
        self._series: dict[LabelKey, _RequestSeries] = {}
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = self._fast_counter(
            "modelyard_requests",
            "Inference requests, by route, model version, endpoint and HTTP status class.",
            (*REQUEST_LABELS, "status_class"),
            registry=r,
        )
        self.errors = self._fast_counter(
            "modelyard_request_errors",
            "Failed inference requests by error type (the OpenAI error code, or client_closed).",
            (*REQUEST_LABELS, "status_class", "error_type"),
            registry=r,
        )
        self.request_duration = self._fast_histogram(
            "modelyard_request_duration_seconds",
            "End-to-end request latency as seen by the gateway.",
            REQUEST_LABELS,
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_time = self._fast_histogram(
            "modelyard_gateway_queue_seconds",
            "Time from request arrival to the engine call (body read, validation, routing).",
            ("route", "model", "version"),
            buckets=QUEUE_BUCKETS,
            registry=r,
        )
        self.time_to_first_token = self._fast_histogram(
            "modelyard_time_to_first_token_seconds",
            "Time from request arrival to the first output token sent to the client (streams; "
            "gen_ai.server.time_to_first_token).",
            REQUEST_LABELS,
            buckets=TTFT_BUCKETS,
            registry=r,
        )
        self.time_per_output_token = self._fast_histogram(
            "modelyard_time_per_output_token_seconds",
            "Mean time between output tokens after the first, per stream (inter-token latency; "
            "gen_ai.server.time_per_output_token).",
            ("route", "model", "version"),
            buckets=TPOT_BUCKETS,
            registry=r,
        )
        self.output_tokens_per_second = self._fast_histogram(
            "modelyard_output_tokens_per_second",
            "Decode speed per request: output tokens over the time spent generating them.",
            ("route", "model", "version"),
            buckets=TOKENS_PER_S_BUCKETS,
            registry=r,
        )
        self.token_usage = self._fast_histogram(
            "modelyard_token_usage",
            "Tokens per request as reported by the engine, token_type = input | output (gen_ai.client.token.usage)."
            " Use rate(..._sum) for tokens per second.",
            ("route", "model", "version", "token_type"),
            buckets=TOKEN_BUCKETS,
            registry=r,
        )
        self.cost = self._fast_counter(
            "modelyard_cost_usd",
            "Estimated cost in US dollars, from the model's price_input_per_1k / price_output_per_1k tags.",
            ("route", "model", "version"),
            registry=r,
        )
        self.in_flight = 0  # a plain int on the hot path, read by the gauge at scrape time
        Gauge("modelyard_requests_in_flight", "Inference requests being processed.", registry=r).set_function(
            lambda: self.in_flight
        )
        self.upstream_retries = Counter(
            "modelyard_upstream_retries",
            "Engine calls retried on a fresh connection because a pooled one had been closed by the engine.",
            registry=r,
        )
        self.invalid_output = Counter(
            "modelyard_structured_output_invalid",
            "Answers whose tool calls or structured output (response_format) did not validate at the gateway, by "
            "what was asked for (tool_calls, json_object, json_schema); their finish_reason says why.",
            ("kind",),
            registry=r,
        )
        self.engine_up = Gauge(
            "modelyard_engine_up",
            "1 when the engine answers its health check, else 0.",
            ("engine", "model", "version"),
            registry=r,
        )
        self.engine_restarts = Counter(
            "modelyard_engine_restarts",
            "Times the supervisor restarted an engine.",
            ("engine", "model", "version"),
            registry=r,
        )
        self.engine_cold_start = Gauge(
            "modelyard_engine_cold_start_seconds",
            "Seconds from launching the engine process to its first healthy answer, of its latest start; "
            "kind = llama.cpp | vllm.",
            ("engine", "model", "version", "kind"),
            registry=r,
        )

    @staticmethod
    def _fast_counter(
        name: str, documentation: str, labelnames: Sequence[str], registry: CollectorRegistry
    ) -> FastCounter:
        counter = FastCounter(name, documentation, labelnames)
        registry.register(counter)
        return counter

    @staticmethod
    def _fast_histogram(
        name: str,
        documentation: str,
        labelnames: Sequence[str],
        buckets: Sequence[float],
        registry: CollectorRegistry,
    ) -> FastHistogram:
        histogram = FastHistogram(name, documentation, labelnames, buckets)
        registry.register(histogram)
        return histogram

    def observe(self, record: RequestRecord) -> None:
        """Runs once per request on the event loop, so it is plain arithmetic on the record's timestamps (the
        same formulas as its properties) and children looked up once per label set."""
        key = (record.route, record.model, record.version, record.endpoint)
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = _RequestSeries(self, key)
        status, error_type = record.status, record.error_type
        counters = series.by_status.get((status, error_type))
        if counters is None:
            counters = series.by_status[(status, error_type)] = self._status_counters(key, record)
        counters[0].value += 1
        if counters[1] is not None:
            counters[1].value += 1
        received, dispatched, finished = record.received, record.dispatched, record.finished
        series.duration.observe((finished or received) - received)
        if dispatched is not None:
            series.queue.observe(dispatched - received)
        first, last, tokens = record.first_token, record.last_token, record.completion_tokens
        if first is not None:
            if record.stream:
                series.ttft.observe(first - received)
            if last is not None and tokens >= 2:
                tpot = (last - first) / (tokens - 1)
                series.tpot.observe(tpot)
                if tpot > 0:
                    series.tps.observe(1.0 / tpot)
                tokens = 0  # decode speed observed from the stream's token times
        if tokens >= 1 and dispatched is not None and finished is not None and finished > dispatched:
            series.tps.observe(tokens / (finished - dispatched))
        if record.prompt_tokens or record.completion_tokens:
            series.input_tokens.observe(record.prompt_tokens)
            series.output_tokens.observe(record.completion_tokens)
        if record.cost_usd:
            series.cost.value += record.cost_usd

    def _status_counters(self, key: LabelKey, record: RequestRecord) -> tuple[CounterChild, CounterChild | None]:
        status_class = record.status_class
        error = None
        if record.error_type or record.status >= 400:
            error = self.errors.labels(*key, status_class, record.error_type or "unknown")
        return self.requests.labels(*key, status_class), error

    def engine_state_changed(
        self,
        engine: str,
        model: str,
        version: str,
        ready: bool,
        restarts: int,
        cold_start: tuple[str, float] | None = None,
    ) -> None:
        """``cold_start`` is (engine kind, seconds) once the engine has become ready."""
        self.engine_up.labels(engine, model, version).set(1 if ready else 0)
        if cold_start is not None:
            self.engine_cold_start.labels(engine, model, version, cold_start[0]).set(cold_start[1])
            self._kinds[engine] = cold_start[0]
        counter = self.engine_restarts.labels(engine, model, version)  # exists from 0, so increase() sees the first
        missing = restarts - self._restarts_seen.get(engine, 0)
        if missing > 0:
            counter.inc(missing)
            self._restarts_seen[engine] = restarts

    def engine_retired(self, engine: str, model: str, version: str) -> None:
        """A version stopped on purpose is not an engine that is down: its series go away."""
        for metric in (self.engine_up, self.engine_restarts):
            with contextlib.suppress(KeyError):
                metric.remove(engine, model, version)
        self._restarts_seen.pop(engine, None)
        kind = self._kinds.pop(engine, None)
        if kind is not None:
            with contextlib.suppress(KeyError):
                self.engine_cold_start.remove(engine, model, version, kind)

    def watch_engine_load(self, active_requests: Callable[[], Iterable[tuple[str, str, str, int]]]) -> None:
        """Per-engine in-flight requests, read at scrape time (the hot path only bumps a plain int)."""
        self.registry.register(_EngineLoadCollector(active_requests))

    def gauge_callback(self, name: str, documentation: str, read: Callable[[], float]) -> None:
        """A gauge whose value is read at scrape time (nothing to update on the hot path)."""
        Gauge(name, documentation, registry=self.registry).set_function(read)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _EngineLoadCollector(Collector):
    def __init__(self, active_requests: Callable[[], Iterable[tuple[str, str, str, int]]]) -> None:
        self._active_requests = active_requests

    def collect(self) -> Iterable[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "modelyard_engine_requests_in_flight",
            "Requests being served by each engine (a retiring engine drains this to 0 before it stops).",
            labels=("engine", "model", "version"),
        )
        for engine, model, version, active in self._active_requests():
            family.add_metric((engine, model, version), active)
        yield family

    def describe(self) -> Iterable[GaugeMetricFamily]:
        return []
