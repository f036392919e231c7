"""The lock-free per-request families must expose exactly what prometheus_client's own would."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from modelyard.observability.fast_metrics import FastCounter, FastHistogram

BUCKETS = (0.01, 0.1, 1, 10)
VALUES = (0.0, 0.01, 0.05, 0.1, 0.5, 1, 3, 10, 11, 1e6)


def _samples(registry: CollectorRegistry) -> dict[tuple[str, frozenset], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(generate_latest(registry).decode())
        for s in family.samples
        if not s.name.endswith("_created")
    }


def test_same_samples_as_prometheus_client() -> None:
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    fast_histogram = FastHistogram("lat_seconds", "latency", ("route",), BUCKETS)
    fast_counter = FastCounter("reqs", "requests", ("route",))
    ours.register(fast_histogram)
    ours.register(fast_counter)
    histogram = Histogram("lat_seconds", "latency", ("route",), buckets=BUCKETS, registry=theirs)
    counter = Counter("reqs", "requests", ("route",), registry=theirs)
    for value in VALUES:
        for route in ("a", "b"):
            fast_histogram.labels(route).observe(value)
            histogram.labels(route).observe(value)
            fast_counter.labels(route).inc(value)
            counter.labels(route).inc(value)
    assert _samples(ours) == _samples(theirs)
    assert _samples(ours)[("lat_seconds_bucket", frozenset({("route", "a"), ("le", "0.01")}))] == 2  # le inclusive
