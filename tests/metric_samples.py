"""Reading one sample out of a gateway's in-process metrics registry (unit tests of observers)."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from modelyard.observability.metrics import GatewayMetrics


def metric_value(metrics: GatewayMetrics, name: str) -> float:
    for family in text_string_to_metric_families(metrics.render().decode()):
        for sample in family.samples:
            if sample.name == name:
                return sample.value
    raise AssertionError(f"{name} not exported")
