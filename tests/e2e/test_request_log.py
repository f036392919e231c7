"""Following one request: trace id in the response and the log line, its row in the request log and export."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from conftest import MODEL
from gateway_process import GatewayProcess

pytestmark = pytest.mark.engine


def test_a_request_is_traceable_through_header_log_and_request_log(gateway: GatewayProcess) -> None:
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    response = httpx.post(
        gateway.url + "/v1/chat/completions",
        json={"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 3},
        headers={"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01", "x-request-id": "trace-me-1"},
        timeout=60,
    )
    assert response.status_code == 200
    assert response.headers["x-modelyard-trace-id"] == trace_id

    deadline = time.monotonic() + 10
    rows: list[dict] = []
    while time.monotonic() < deadline:
        rows = httpx.get(gateway.url + "/admin/requests", params={"route": MODEL, "limit": 50}, timeout=10).json()[
            "data"
        ]
        if any(r["request_id"] == "trace-me-1" for r in rows):
            break
        time.sleep(0.2)
    row = next(r for r in rows if r["request_id"] == "trace-me-1")
    assert (row["trace_id"], row["status"], row["version"], row["completion_tokens"]) == (trace_id, 200, "1", 3)
    assert row["duration_ms"] > 0 and row["queued_ms"] is not None and row["attempts"] == 1

    exported = httpx.get(gateway.url + "/admin/requests/export", params={"since": "1h"}, timeout=30)
    assert exported.headers["content-type"] == "application/x-ndjson"
    lines = [json.loads(line) for line in exported.text.splitlines()]
    assert any(line["request_id"] == "trace-me-1" for line in lines)

    log_text = gateway.log()
    assert f"trace_id={trace_id}" in log_text and "request_id=trace-me-1" in log_text

    bad = httpx.get(gateway.url + "/admin/requests", params={"status": "fine"}, timeout=10)
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "status"
