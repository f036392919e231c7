"""The request pipeline in-process (gateway/pipeline.py): what every request is answered with and recorded as, for
each way it can end — success, a refusal at any stage, a bug, a client that goes away."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from inprocess import chat, raw_call, serving
from mock_upstreams import MockUpstream
from modelyard.gateway.decide import Decider
from modelyard.observability.request_log_store import RequestLogStore
from modelyard.observability.request_query import build_query
from modelyard.roles.stores import open_database


def test_a_successful_answer_names_the_request_its_route_target_and_attempts(
    mocks: Callable[..., MockUpstream],
) -> None:
    upstream = mocks()

    async def scenario() -> None:
        async with serving({"m": [upstream.url]}) as gateway:
            response = await gateway.client.post(
                "/v1/chat/completions", json=chat("m", max_tokens=3), headers={"x-request-id": "req-1"}
            )
            assert response.status_code == 200, response.text
            assert response.json()["choices"][0]["message"]["content"] == "tok tok tok "
            headers = response.headers
            assert headers["x-request-id"] == "req-1" and len(headers["x-modelyard-trace-id"]) == 32
            assert headers["x-modelyard-route"] == "m" and headers["x-modelyard-target"] == "m"
            assert headers["x-modelyard-model-version"] == "m" and headers["x-modelyard-attempts"] == "1"
            names = [k for k, _ in response.headers.multi_items() if k.startswith("x-")]
            assert names == [
                "x-request-id",
                "x-modelyard-trace-id",
                "x-modelyard-route",
                "x-modelyard-target",
                "x-modelyard-model-version",
                "x-modelyard-attempts",
            ]
            assert gateway.metric("modelyard_requests_total", route="m", status_class="2xx") == 1
            assert gateway.metric("modelyard_token_usage_sum", route="m", token_type="output") == 3
            assert gateway.runtime.metrics.in_flight == 0

    asyncio.run(scenario())


def test_a_caller_trace_is_continued() -> None:
    async def scenario() -> None:
        async with serving({}) as gateway:
            parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
            response = await gateway.client.post("/v1/chat/completions", content=b"{", headers={"traceparent": parent})
            assert response.headers["x-modelyard-trace-id"] == "0af7651916cd43dd8448eb211c80319c"

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("body", "status", "code", "param"),
    [
        (b"", 400, "invalid_json", None),
        (b"{not json", 400, "invalid_json", None),
        (b"[1, 2]", 400, "invalid_json", None),
        (b'{"model": "m", "messages": [{"role": "robot", "content": "x"}]}', 400, "invalid_value", "messages[0].role"),
        (b'{"messages": [{"role": "user", "content": "x"}]}', 400, "invalid_value", "model"),
        (b'{"model": "nope", "messages": [{"role": "user", "content": "x"}]}', 404, "model_not_found", "model"),
        (b'{"model": "m", "messages": [{"role": "user", "content": "' + b"x" * 70_000 + b'"}]}', 413,
         "request_too_large", None),
    ],
)  # fmt: skip
def test_refusals_before_any_upstream_call_are_openai_shaped_and_counted(
    body: bytes, status: int, code: str, param: str | None
) -> None:
    async def scenario() -> None:
        async with serving({"m": ["http://127.0.0.1:9"]}) as gateway:  # never called
            response = await gateway.client.post("/v1/chat/completions", content=body)
            assert response.status_code == status, response.text
            error = response.json()["error"]
            assert error["code"] == code and error["param"] == param and error["message"]
            assert "x-request-id" in response.headers and "x-modelyard-attempts" not in response.headers
            if code == "model_not_found":
                assert "Available models: m." in error["message"]
            assert gateway.metric("modelyard_requests_total", status_class="4xx") == 1
            assert gateway.metric("modelyard_request_errors_total", error_type=code) == 1

    asyncio.run(scenario())


def test_unknown_paths_and_methods_are_refused_by_the_endpoint_table() -> None:
    async def scenario() -> None:
        async with serving({}) as gateway:
            missing = await gateway.client.get("/v1/nothing")
            assert missing.status_code == 404 and missing.json()["error"]["code"] == "unknown_url"
            wrong = await gateway.client.get("/v1/chat/completions")
            assert wrong.status_code == 405 and wrong.headers["allow"] == "POST"
            registry = await gateway.client.get("/admin/models")  # a static gateway has no registry
            assert (
                registry.status_code == 404 and "not available on this gateway" in registry.json()["error"]["message"]
            )
            assert (await gateway.client.head("/health")).status_code == 200

    asyncio.run(scenario())


def test_a_bug_in_a_stage_is_a_500_with_the_request_id_and_still_observed(
    mocks: Callable[..., MockUpstream], monkeypatch: pytest.MonkeyPatch
) -> None:
    upstream = mocks()

    def broken(*args: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(Decider, "__call__", broken)

    async def scenario() -> None:
        async with serving({"m": [upstream.url]}) as gateway:
            response = await gateway.client.post("/v1/chat/completions", json=chat("m"), headers={"x-request-id": "r9"})
            assert response.status_code == 500
            assert response.json()["error"]["code"] == "internal_error" and "r9" in response.json()["error"]["message"]
            assert gateway.metric("modelyard_request_errors_total", error_type="internal_error") == 1
            assert gateway.runtime.metrics.in_flight == 0

    asyncio.run(scenario())


def test_a_client_that_leaves_while_sending_its_body_is_recorded_as_closed() -> None:
    async def scenario() -> None:
        async with serving({"m": ["http://127.0.0.1:9"]}) as gateway:
            await raw_call(
                gateway.runtime.app, "POST", "/v1/chat/completions", b'{"model":', disconnect_before_body=True
            )
            assert gateway.metric("modelyard_request_errors_total", error_type="client_closed") == 1

    asyncio.run(scenario())


def test_streams_relay_events_and_drop_the_usage_chunk_the_client_did_not_ask_for(
    mocks: Callable[..., MockUpstream],
) -> None:
    upstream = mocks()

    async def scenario() -> None:
        async with serving({"m": [upstream.url]}) as gateway:
            plain = await gateway.client.post("/v1/chat/completions", json=chat("m", max_tokens=5, stream=True))
            assert plain.status_code == 200 and plain.headers["content-type"] == "text/event-stream"
            events = [e for e in plain.text.split("\n\n") if e]
            assert events[-1] == "data: [DONE]" and not any('"usage"' in e for e in events)
            assert sum('"content":"tok "' in e for e in events) == 5
            asked = await gateway.client.post(
                "/v1/chat/completions",
                json=chat("m", max_tokens=5, stream=True, stream_options={"include_usage": True}),
            )
            assert '"usage":{' in asked.text
            # tokens were counted for both, from the usage chunk the gateway asked for
            assert gateway.metric("modelyard_token_usage_sum", route="m", token_type="output") == 10
            assert gateway.metric("modelyard_time_to_first_token_seconds_count", route="m") == 2

    asyncio.run(scenario())


def test_a_client_gone_mid_stream_stops_the_upstream_call_and_is_recorded(mocks: Callable[..., MockUpstream]) -> None:
    upstream = mocks("--token-rate", "20")

    async def scenario() -> None:
        async with serving({"m": [upstream.url]}) as gateway:
            answer = await raw_call(
                gateway.runtime.app,
                "POST",
                "/v1/chat/completions",
                chat("m", max_tokens=200, stream=True),
                disconnect_after_pieces=3,
            )
            assert answer.status == 200 and not answer.complete and len(answer.pieces) >= 3
            assert gateway.metric("modelyard_request_errors_total", error_type="client_closed") == 1
            assert [r.upstream.active_requests for r in gateway.runtime.catalog().replicas()] == [0]
            assert gateway.runtime.metrics.in_flight == 0

    asyncio.run(asyncio.wait_for(scenario(), 30))


def test_bodies_are_kept_only_for_sampled_routes_and_logged_rows_match_answers(
    mocks: Callable[..., MockUpstream], tmp_path: Path
) -> None:
    upstream = mocks()
    db = tmp_path / "requests.db"

    async def scenario() -> None:
        async with serving({"m": [upstream.url], "other": [upstream.url]}, request_log=db, bodies=("m=1",)) as gateway:
            for model in ("m", "other"):
                response = await gateway.client.post(
                    "/v1/chat/completions", json=chat(model), headers={"x-request-id": model}
                )
                assert response.status_code == 200

    asyncio.run(scenario())
    store = RequestLogStore(open_database(f"sqlite:///{db}"))
    rows = {row["request_id"]: row for row in store.query(build_query({"bodies": "true"}))}
    assert set(rows) == {"m", "other"}
    assert rows["m"]["request_body"] and rows["m"]["response_body"]
    assert rows["other"].get("request_body") is None
    assert rows["m"]["status"] == 200 and rows["m"]["route"] == "m" and rows["m"]["attempts"] == 1
