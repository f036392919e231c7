"""The in-memory metrics history behind the console's charts: readings, differences, quantiles, the bound."""

from __future__ import annotations

import math

import pytest

from modelyard.observability.history import MetricsHistory, Totals, chart_data, histogram_quantile, step
from modelyard.observability.metrics import GatewayMetrics
from modelyard.observability.request_record import RequestRecord


def test_histogram_quantile_interpolates_within_the_bucket_like_prometheus() -> None:
    buckets = {0.1: 10.0, 0.5: 30.0, 1.0: 40.0, math.inf: 40.0}  # cumulative counts
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.1 + 0.4 * (20 - 10) / 20)
    assert histogram_quantile(0.25, buckets) == pytest.approx(0.1)
    assert histogram_quantile(0.95, {1.0: 0.0, math.inf: 5.0}) == 1.0  # in +Inf: the highest finite bound
    assert histogram_quantile(0.5, {0.1: 0.0, math.inf: 0.0}) is None


def test_step_turns_two_readings_into_rates_and_interval_quantiles() -> None:
    before = Totals(100.0, requests={("m", "1"): 10.0}, errors={"timeout": 1.0},
                    latency={("m", "1"): {0.1: 5.0, 1.0: 10.0, math.inf: 10.0}},
                    output_tokens={("m", "1"): 100.0})  # fmt: skip
    now = Totals(105.0, requests={("m", "1"): 20.0, ("m", "2"): 5.0}, errors={"timeout": 6.0},
                 latency={("m", "1"): {0.1: 5.0, 1.0: 20.0, math.inf: 20.0}},
                 output_tokens={("m", "1"): 150.0}, in_flight=3.0)  # fmt: skip
    point = step(before, now)
    assert point.requests == {"m v1": 2.0, "m v2": 1.0}
    assert point.errors == {"timeout": 1.0}
    assert point.tokens == {"m v1": 10.0}
    assert point.latency["p50 m v1"] == pytest.approx(0.1 + 0.9 * 0.5)  # only the 10 requests of this interval
    assert point.in_flight["gateway"] == 3.0
    restarted = step(now, Totals(110.0, requests={("m", "1"): 4.0}))
    assert restarted.requests["m v1"] == pytest.approx(0.8)  # a counter that went down counts from zero


def test_the_history_reads_the_gateways_own_registry_and_keeps_the_last_hour_only() -> None:
    metrics = GatewayMetrics()
    history = MetricsHistory(metrics.registry, interval_s=5, window_s=20)
    history.sample(at=1000.0)
    for i in range(4):
        record = RequestRecord(f"r{i}", "t", "chat", 0.0, 0.0, route="m", model="m", version="1", status=200)
        record.finished = 0.2
        metrics.observe(record)
    history.sample(at=1005.0)
    data = chart_data(history.points())
    assert data["t"] == [1005.0] and data["charts"]["requests"] == {"m v1": [pytest.approx(0.8)]}
    for second in range(1010, 1040, 5):
        history.sample(at=float(second))
    assert len(history.points()) == 4  # 20 s of 5 s points
    assert chart_data(history.points())["charts"]["requests"]["m v1"] == [0.0] * 4
