"""Metrics of routing decisions: retries, fallbacks, ejections, small/large choices, shadow comparisons and
deployments reloads (documented in docs/observability.md). Labels are route and target names from the
deployments file and replica names (engine instances or configured URLs): all bounded by configuration."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

SIMILARITY_BUCKETS = (0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 1.0)
SCORE_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 80, 160)


class RoutingMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self._retries = Counter(
            "modelyard_route_retries",
            "Upstream attempts after a request's first one (another replica or a fallback target).",
            ("route", "target"),
            registry=registry,
        )
        self._fallbacks = Counter(
            "modelyard_route_fallbacks",
            "Requests that moved to the next target of the fallback chain.",
            ("route", "from_target", "to_target"),
            registry=registry,
        )
        self._ejections = Counter(
            "modelyard_upstream_ejections",
            "Replicas ejected by the circuit breaker after consecutive failures.",
            ("target", "replica"),
            registry=registry,
        )
        self._readmissions = Counter(
            "modelyard_upstream_readmissions",
            "Ejected replicas re-admitted after a successful probe.",
            ("replica",),
            registry=registry,
        )
        self._router = Counter(
            "modelyard_router_decisions",
            "Small/large routing decisions by route and choice.",
            ("route", "choice"),
            registry=registry,
        )
        self._router_score = Histogram(
            "modelyard_router_score",
            "Prompt complexity scores computed by the small/large router (0 = trivial, 1 = hard).",
            ("route",),
            buckets=SCORE_BUCKETS,
            registry=registry,
        )
        self._shadow = Counter(
            "modelyard_shadow_requests",
            "Mirrored requests by outcome: ok, error, timeout, skipped (too many in flight).",
            ("route", "target", "outcome"),
            registry=registry,
        )
        self._shadow_match = Counter(
            "modelyard_shadow_comparisons",
            "Primary/shadow answer comparisons; match = exact | different.",
            ("route", "target", "match"),
            registry=registry,
        )
        self._shadow_similarity = Histogram(
            "modelyard_shadow_similarity",
            "Text similarity of shadow answers to primary answers (1 = identical).",
            ("route", "target"),
            buckets=SIMILARITY_BUCKETS,
            registry=registry,
        )
        self._shadow_latency = Histogram(
            "modelyard_shadow_latency_seconds",
            "Latency of compared requests, role = primary | shadow, for side-by-side quantiles.",
            ("route", "target", "role"),
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self._reloads = Counter(
            "modelyard_deployments_reloads",
            "Deployments file loads by result: applied or rejected (the running configuration kept serving).",
            ("result",),
            registry=registry,
        )
        for result in ("applied", "rejected"):
            self._reloads.labels(result)
        self._held = Counter(
            "modelyard_held_requests",
            "Requests held while every engine of their target was (re)starting, by outcome: served (sent once a "
            "replica was ready), expired (503 after the route's hold_s), full (503: hold_max already waiting), "
            "gone (the client left while held).",
            ("route", "outcome"),
            registry=registry,
        )
        self._holding = Gauge(
            "modelyard_held_requests_waiting",
            "Requests waiting now for an engine of their target to come back.",
            ("route",),
            registry=registry,
        )
        self._queued = Gauge(
            "modelyard_queue_depth",
            "Requests waiting in the gateway for an engine slot (replicas at their concurrency limit).",
            ("route", "version"),
            registry=registry,
        )
        self._queue_wait = Histogram(
            "modelyard_queue_wait_seconds",
            "Time requests waited in the gateway for an engine slot (only those that had to wait).",
            ("route", "version"),
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self._queue_refused = Counter(
            "modelyard_queue_rejected",
            "Requests refused with 429 queue_full: the replica's queue (--queue-max) was full.",
            ("route", "version"),
            registry=registry,
        )
        self._registry = registry

    def retried(self, route: str, target: str) -> None:
        self._retries.labels(route, target).inc()

    def fell_back(self, route: str, from_target: str, to_target: str) -> None:
        self._fallbacks.labels(route, from_target, to_target).inc()

    def ejected(self, target: str, replica: str) -> None:
        self._ejections.labels(target, replica).inc()

    def readmitted(self, replica: str) -> None:
        self._readmissions.labels(replica).inc()

    def hold_began(self, route: str) -> None:
        self._holding.labels(route).inc()

    def hold_ended(self, route: str, outcome: str) -> None:
        """``outcome``: served, expired, gone (after :meth:`hold_began`) or full (never held)."""
        if outcome != "full":
            self._holding.labels(route).dec()
        self._held.labels(route, outcome).inc()

    def queue_entered(self, route: str, version: str) -> None:
        self._queued.labels(route, version).inc()

    def queue_left(self, route: str, version: str, waited_s: float) -> None:
        self._queued.labels(route, version).dec()
        self._queue_wait.labels(route, version).observe(waited_s)

    def queue_full(self, route: str, version: str) -> None:
        self._queue_refused.labels(route, version).inc()

    def routed(self, route: str, choice: str, score: float) -> None:
        self._router.labels(route, choice).inc()
        self._router_score.labels(route).observe(score)

    def shadow_outcome(self, route: str, target: str, outcome: str) -> None:
        self._shadow.labels(route, target, outcome).inc()

    def shadow_compared(
        self, route: str, target: str, exact: bool, similarity: float, primary_s: float, shadow_s: float
    ) -> None:
        self._shadow_match.labels(route, target, "exact" if exact else "different").inc()
        self._shadow_similarity.labels(route, target).observe(similarity)
        self._shadow_latency.labels(route, target, "primary").observe(primary_s)
        self._shadow_latency.labels(route, target, "shadow").observe(shadow_s)

    def reloaded(self, applied: bool) -> None:
        self._reloads.labels("applied" if applied else "rejected").inc()

    def watch_replicas(self, replicas: Callable[[], Iterable[tuple[str, bool]]]) -> None:
        """``modelyard_upstream_ejected`` per replica, read at scrape time."""
        self._registry.register(_EjectedCollector(replicas))

    def config_status(self, read: Callable[[], float]) -> None:
        Gauge(
            "modelyard_deployments_last_reload_ok",
            "1 when the last deployments file load was applied, 0 when it was rejected.",
            registry=self._registry,
        ).set_function(read)


class _EjectedCollector(Collector):
    def __init__(self, replicas: Callable[[], Iterable[tuple[str, bool]]]) -> None:
        self._replicas = replicas

    def collect(self) -> Iterable[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "modelyard_upstream_ejected",
            "1 while the circuit breaker keeps a replica out of rotation.",
            labels=["replica"],
        )
        for name, ejected in self._replicas():
            family.add_metric([name], 1 if ejected else 0)
        yield family

    def describe(self) -> Iterable[GaugeMetricFamily]:
        return []
