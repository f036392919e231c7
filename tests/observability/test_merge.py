"""Merging the workers' expositions: what one process would have exported, whichever worker is scraped."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from modelyard.observability.merge import merge_expositions


def _worker(requests: int, in_flight: int, engine_up: int, latencies: list[float]) -> bytes:
    registry = CollectorRegistry()
    counter = Counter("modelyard_requests", "Requests.", ("route",), registry=registry)
    counter.labels("a").inc(requests)
    counter.labels('we"ird\\').inc(1)
    Gauge("modelyard_requests_in_flight", "In flight.", registry=registry).set(in_flight)
    Gauge("modelyard_engine_up", "Up.", ("engine",), registry=registry).labels("e1").set(engine_up)
    histogram = Histogram("modelyard_latency_seconds", "Latency.", buckets=(0.1, 1.0), registry=registry)
    for value in latencies:
        histogram.observe(value)
    return generate_latest(registry)


def _samples(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text.decode())
        for s in family.samples
    }


def test_counters_histograms_and_shared_gauges_add_up_and_state_gauges_do_not() -> None:
    merged = _samples(merge_expositions([_worker(3, 2, 1, [0.05, 2.0]), _worker(4, 1, 1, [0.5]), b""]))
    assert merged[("modelyard_requests_total", (("route", "a"),))] == 7
    assert merged[("modelyard_requests_total", (("route", 'we"ird\\'),))] == 2  # labels escaped and read back
    assert merged[("modelyard_requests_in_flight", ())] == 3
    assert merged[("modelyard_engine_up", (("engine", "e1"),))] == 1  # the same engine seen by both
    assert merged[("modelyard_latency_seconds_bucket", (("le", "0.1"),))] == 1
    assert merged[("modelyard_latency_seconds_bucket", (("le", "1.0"),))] == 2
    assert merged[("modelyard_latency_seconds_bucket", (("le", "+Inf"),))] == 3
    assert merged[("modelyard_latency_seconds_count", ())] == 3
    assert merged[("modelyard_latency_seconds_sum", ())] == 2.55
    assert not any(name.endswith("_created") for name, _ in merged)


def test_one_exposition_comes_back_with_the_same_samples_and_nothing_merges_to_nothing() -> None:
    one = _worker(5, 0, 0, [0.2])
    assert {k: v for k, v in _samples(one).items() if not k[0].endswith("_created")} == _samples(
        merge_expositions([one])
    )
    assert merge_expositions([]) == b""
