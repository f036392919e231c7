"""Traces over OTLP: the gateway request, routing decision and engine call, with GenAI attributes."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from conftest import MODEL
from gateway_process import GatewayProcess
from otlp_receiver import OtlpReceiver

pytestmark = [pytest.mark.engine, pytest.mark.slow]


def _attributes(span: object) -> dict[str, object]:
    values = {}
    for item in span.attributes:  # type: ignore[attr-defined]
        value = item.value
        values[item.key] = getattr(value, value.WhichOneof("value"))
    return values


def test_spans_reach_the_collector_with_the_callers_trace_id(
    start_gateway: Callable[..., GatewayProcess], tmp_path: Path
) -> None:
    receiver = OtlpReceiver()
    try:
        gateway = start_gateway(
            "--parallel",
            "1",
            "--ctx-size",
            "2048",
            "--otlp-endpoint",
            receiver.url,
            env={"OTEL_BSP_SCHEDULE_DELAY": "100"},
        )
        trace_id, caller_span = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
        response = httpx.post(
            gateway.url + "/v1/chat/completions",
            json={"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 3, "stream": True},
            headers={"traceparent": f"00-{trace_id}-{caller_span}-01"},
            timeout=60,
        )
        assert response.status_code == 200 and response.headers["x-modelyard-trace-id"] == trace_id
        deadline = time.monotonic() + 15
        while len([s for s in receiver.spans if s.trace_id.hex() == trace_id]) < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
        spans = {s.name: s for s in receiver.spans if s.trace_id.hex() == trace_id}
        server = spans[f"chat {MODEL}"]
        assert server.parent_span_id.hex() == caller_span
        assert spans["route"].parent_span_id == server.span_id
        call = spans[f"chat {MODEL}:1"]
        assert call.parent_span_id == server.span_id
        assert server.start_time_unix_nano <= call.start_time_unix_nano <= call.end_time_unix_nano
        assert call.end_time_unix_nano <= server.end_time_unix_nano
        attributes = _attributes(server)
        assert attributes["gen_ai.operation.name"] == "chat"
        assert attributes["gen_ai.request.model"] == MODEL
        assert attributes["gen_ai.response.model"] == f"{MODEL}:1"
        assert attributes["gen_ai.usage.output_tokens"] == 3
        assert attributes["http.response.status_code"] == 200
        assert [event.name for event in call.events] == ["first_token"]
    finally:
        receiver.close()
