"""First metrics: counted per model and status, latencies and tokens, in Prometheus text format."""

from __future__ import annotations

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import MODEL, MODEL_V1
from gateway_process import GatewayProcess

pytestmark = pytest.mark.engine


def _samples(gateway: GatewayProcess) -> dict[tuple[str, frozenset], float]:
    response = httpx.get(gateway.url + "/metrics", timeout=5)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def _value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_requests_latency_ttft_tokens_and_errors_are_recorded(gateway: GatewayProcess) -> None:
    before = _samples(gateway)
    ok = httpx.post(
        gateway.url + "/v1/chat/completions",
        json={"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4},
        timeout=60,
    )
    assert ok.status_code == 200
    with httpx.stream(
        "POST",
        gateway.url + "/v1/completions",
        json={"model": MODEL_V1, "prompt": "One two three", "max_tokens": 3, "stream": True},
        timeout=60,
    ) as stream:
        assert b"[DONE]" in b"".join(stream.iter_raw())
    httpx.post(gateway.url + "/v1/chat/completions", json={"model": "missing", "messages": []}, timeout=10)
    after = _samples(gateway)

    def delta(name: str, **labels: str) -> float:
        return _value(after, name, **labels) - _value(before, name, **labels)

    chat = {"route": MODEL, "model": MODEL, "version": "1", "endpoint": "chat"}
    stream = {"route": MODEL_V1, "model": MODEL, "version": "1", "endpoint": "completions"}
    per_version = {"route": MODEL_V1, "model": MODEL, "version": "1"}
    assert delta("modelyard_requests_total", **chat, status_class="2xx") == 1
    assert delta("modelyard_requests_total", **stream, status_class="2xx") == 1
    unknown = {"route": "_unknown", "model": "_unknown", "version": "", "endpoint": "chat"}
    assert delta("modelyard_requests_total", **unknown, status_class="4xx") == 1
    assert delta("modelyard_request_errors_total", **unknown, status_class="4xx", error_type="invalid_value") == 1
    assert delta("modelyard_request_duration_seconds_count", **chat) == 1
    assert delta("modelyard_gateway_queue_seconds_count", route=MODEL, model=MODEL, version="1") == 1
    assert delta("modelyard_time_to_first_token_seconds_count", **stream) == 1
    assert delta("modelyard_time_per_output_token_seconds_count", **per_version) == 1
    assert delta("modelyard_output_tokens_per_second_count", **per_version) == 1
    assert delta("modelyard_token_usage_sum", route=MODEL, model=MODEL, version="1", token_type="output") == 4
    assert delta("modelyard_token_usage_sum", **per_version, token_type="output") == 3
    assert delta("modelyard_token_usage_sum", **per_version, token_type="input") > 3
    assert _value(after, "modelyard_engine_up", engine=MODEL_V1, model=MODEL, version="1") == 1
    assert _value(after, "modelyard_engine_requests_in_flight", engine=MODEL_V1, model=MODEL, version="1") == 0
    engine_labels = {"engine": MODEL_V1, "model": MODEL, "version": "1"}
    assert (
        _value(after, "modelyard_engine_llamacpp_tokens_predicted_total", **engine_labels) >= 7
    )  # the engine's own count
