"""Every malformed request gets an OpenAI-shaped error with the right status and the field named."""

from __future__ import annotations

import httpx
import openai
import orjson
import pytest

from conftest import MODEL
from gateway_process import GatewayProcess

pytestmark = pytest.mark.engine

CHAT = "/v1/chat/completions"


def _post(gateway: GatewayProcess, path: str, content: bytes | str, **headers: str) -> httpx.Response:
    return httpx.post(
        gateway.url + path, content=content, headers={"content-type": "application/json", **headers}, timeout=30
    )


def _assert_error(response: httpx.Response, status: int, param: str | None = None, code: str | None = None) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"]
    if param is not None:
        assert error["param"] == param
    if code is not None:
        assert error["code"] == code
    return error


def test_malformed_json_is_400(gateway: GatewayProcess) -> None:
    _assert_error(_post(gateway, CHAT, b'{"model": "x", "messages": ['), 400, code="invalid_json")


def test_empty_body_is_400(gateway: GatewayProcess) -> None:
    _assert_error(_post(gateway, CHAT, b""), 400, code="invalid_json")


def test_non_object_json_is_400(gateway: GatewayProcess) -> None:
    _assert_error(_post(gateway, CHAT, b"[1, 2]"), 400, code="invalid_json")


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": [{"role": "user", "content": "hi"}]}, "model"),
        ({"model": MODEL}, "messages"),
        ({"model": MODEL, "messages": "hi"}, "messages"),
        ({"model": MODEL, "messages": []}, "messages"),
        ({"model": MODEL, "messages": [{"content": "hi"}]}, "messages[0].role"),
        ({"model": MODEL, "messages": [{"role": "robot", "content": "hi"}]}, "messages[0].role"),
        ({"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 0}, "max_tokens"),
        ({"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "temperature": 9}, "temperature"),
        ({"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": "yes"}, "stream"),
        ({"model": 7, "messages": [{"role": "user", "content": "hi"}]}, "model"),
    ],
)
def test_invalid_fields_are_400_and_name_the_field(gateway: GatewayProcess, body: dict, param: str) -> None:
    response = httpx.post(gateway.url + CHAT, json=body, timeout=30)
    error = _assert_error(response, 400, param=param)
    assert error["type"] == "invalid_request_error"
    assert param in error["message"]


def test_completion_without_prompt_is_400(gateway: GatewayProcess) -> None:
    _assert_error(httpx.post(gateway.url + "/v1/completions", json={"model": MODEL}, timeout=30), 400, "prompt")


def test_unknown_model_is_404_and_lists_what_exists(gateway: GatewayProcess) -> None:
    response = httpx.post(
        gateway.url + CHAT, json={"model": "gpt-9", "messages": [{"role": "user", "content": "hi"}]}, timeout=30
    )
    error = _assert_error(response, 404, param="model", code="model_not_found")
    assert MODEL in error["message"]
    assert httpx.get(gateway.url + "/v1/models/gpt-9", timeout=5).status_code == 404


def test_unknown_model_raises_the_sdk_not_found_error(gateway: GatewayProcess) -> None:
    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="unused", max_retries=0)
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "hi"}])


def test_body_over_the_limit_is_413(gateway: GatewayProcess) -> None:
    huge = orjson.dumps({"model": MODEL, "messages": [{"role": "user", "content": "a" * 70_000}]})
    _assert_error(_post(gateway, CHAT, huge), 413, code="request_too_large")


def test_body_over_the_limit_without_content_length_is_413(gateway: GatewayProcess) -> None:
    def chunks():
        yield b'{"model": "x", "messages": [{"role": "user", "content": "'
        for _ in range(20):
            yield b"a" * 8192
        yield b'"}]}'

    response = httpx.post(gateway.url + CHAT, content=chunks(), headers={"content-type": "application/json"})
    assert "content-length" not in response.request.headers
    _assert_error(response, 413)


def test_embeddings_are_a_clear_404_when_the_deployment_has_none(gateway: GatewayProcess) -> None:
    response = httpx.post(gateway.url + "/v1/embeddings", json={"model": MODEL, "input": "hello"}, timeout=30)
    error = _assert_error(response, 404, code="unsupported_endpoint")
    assert "not supported by this deployment" in error["message"]


def test_unknown_route_and_wrong_method(gateway: GatewayProcess) -> None:
    _assert_error(httpx.get(gateway.url + "/v1/nothing", timeout=5), 404, code="unknown_url")
    wrong = httpx.get(gateway.url + CHAT, timeout=5)
    assert wrong.status_code == 405
    assert wrong.headers["allow"] == "POST"


def test_engine_rejection_is_relayed_in_openai_shape(gateway: GatewayProcess) -> None:
    """A request valid for the gateway but refused by llama-server (prompt longer than a slot's context)."""
    response = httpx.post(
        gateway.url + "/v1/completions", json={"model": MODEL, "prompt": "word " * 6000, "max_tokens": 1}, timeout=60
    )
    assert 400 <= response.status_code < 500, response.text
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}


def test_inference_responses_carry_the_request_id(gateway: GatewayProcess) -> None:
    echoed = httpx.post(gateway.url + CHAT, json={"model": "nope"}, headers={"x-request-id": "trace-me-42"})
    assert echoed.headers["x-request-id"] == "trace-me-42"
    fresh = httpx.post(gateway.url + CHAT, content=b"{")
    assert len(fresh.headers["x-request-id"]) == 24


def test_parts_a_text_model_cannot_read_are_400_and_never_eject_the_engine(gateway: GatewayProcess) -> None:
    """llama-server answers 500 to image or audio parts without a projector; that is the request's fault, so each
    such request is a 400 for its client, and however many arrive the engine keeps serving everyone else."""
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
    audio = {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}}
    for part in (image, audio, image, audio, image):
        body = {"model": MODEL, "messages": [{"role": "user", "content": [part, {"type": "text", "text": "?"}]}]}
        response = httpx.post(gateway.url + CHAT, json={**body, "max_tokens": 2}, timeout=60)
        error = _assert_error(response, 400)
        assert response.headers["x-modelyard-attempts"] == "1"  # not retried
        assert error["message"]
    plain = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}
    ok = httpx.post(gateway.url + CHAT, json=plain, timeout=60)
    assert ok.status_code == 200
    metrics = httpx.get(gateway.url + "/metrics", timeout=10).text
    assert "modelyard_upstream_ejections_total{" not in metrics
