"""The console's charts from a real Prometheus (``--prometheus-url``): it scrapes a gateway metrics registry served
over HTTP, and :class:`PrometheusCharts` answers the same document as the in-memory history."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from modelyard.api.console.charts import PrometheusCharts
from modelyard.observability.metrics import GatewayMetrics
from modelyard.observability.request_record import RequestRecord

from prometheus_process import PrometheusProcess


@pytest.fixture
def scraped(tmp_path: Path) -> Iterator[tuple[GatewayMetrics, PrometheusProcess]]:
    metrics = GatewayMetrics()
    lock = threading.Lock()

    class Exposition(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            with lock:
                body = metrics.render()
            self.send_response(200)
            self.send_header("content-type", metrics.content_type)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Exposition)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    prometheus = PrometheusProcess(tmp_path / "prometheus", f"127.0.0.1:{server.server_address[1]}", [])
    try:
        prometheus.wait_ready()
        yield metrics, prometheus
    finally:
        prometheus.stop()
        server.shutdown()


def _observe(metrics: GatewayMetrics, version: str, n: int) -> None:
    for i in range(n):
        record = RequestRecord(f"r{i}", "t", "chat", 0.0, 0.0, route="m", model="m", version=version, status=200)
        record.finished = 0.3
        metrics.observe(record)


def test_charts_come_from_prometheus_per_route_and_version(
    scraped: tuple[GatewayMetrics, PrometheusProcess],
) -> None:
    metrics, prometheus = scraped
    _observe(metrics, "1", 1)
    _observe(metrics, "2", 1)
    prometheus.wait_for(lambda: prometheus.scalar("count(modelyard_requests_total)") == 2, "the first scrape")
    for _ in range(6):  # traffic over a few scrapes, so rate() has something to show
        _observe(metrics, "1", 20)
        _observe(metrics, "2", 5)
        time.sleep(1)
    charts = PrometheusCharts(prometheus.url, step_s=5)

    def filled() -> dict | None:
        data = asyncio.run(charts.data(None))
        requests = data["charts"]["requests"]
        ok = "error" not in data and {"m v1", "m v2"} <= set(requests) and requests["m v1"][-1]
        return data if ok else None

    data = prometheus.wait_for(filled, "rates in the chart data", timeout=30)
    requests = data["charts"]["requests"]
    assert data["source"] == "prometheus" and len(data["t"]) == len(requests["m v1"]) == 721
    assert requests["m v1"][-1] > requests["m v2"][-1] > 0  # the two versions side by side
    assert 0.25 < data["charts"]["latency"]["p95 m v1"][-1] <= 0.5  # every request took 0.3 s: the (0.25, 0.5] bucket
    assert set(data["charts"]["in_flight"]) >= {"gateway"}


def test_an_unreachable_prometheus_is_said_in_words() -> None:
    data = asyncio.run(PrometheusCharts("http://127.0.0.1:9", step_s=60).data(None))
    assert data["error"].startswith("Prometheus at http://127.0.0.1:9")
    assert data["charts"]["requests"] == {}
