from __future__ import annotations

import pytest

from modelyard.errors import APIError
from modelyard.gateway.schemas import ChatCompletionRequest, CompletionRequest, EmbeddingRequest
from modelyard.jsonbody import decode_object, validate

MESSAGE = {"role": "user", "content": "hi"}


def test_valid_chat_keeps_unknown_engine_fields_out_of_the_way() -> None:
    request = validate({"model": "m", "messages": [MESSAGE], "top_k": 5, "stream": True}, ChatCompletionRequest)
    assert request.model == "m"
    assert request.stream is True


def test_content_parts_and_null_content_are_accepted() -> None:
    parts = [{"type": "text", "text": "hi"}]
    validate({"model": "m", "messages": [{"role": "user", "content": parts}]}, ChatCompletionRequest)
    validate({"model": "m", "messages": [MESSAGE, {"role": "assistant", "content": None}]}, ChatCompletionRequest)


@pytest.mark.parametrize(
    ("payload", "param"),
    [
        ({"messages": [MESSAGE]}, "model"),
        ({"model": "m"}, "messages"),
        ({"model": "m", "messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
        ({"model": "m", "messages": [MESSAGE, {"content": "x"}]}, "messages[1].role"),
        ({"model": "m", "messages": [MESSAGE], "top_p": 1.5}, "top_p"),
        ({"model": "m", "messages": [MESSAGE], "stop": 3}, "stop"),
        (
            {"model": "m", "messages": [MESSAGE], "stream_options": {"include_usage": "y"}},
            "stream_options.include_usage",
        ),
    ],
)
def test_errors_name_the_field(payload: dict, param: str) -> None:
    with pytest.raises(APIError) as caught:
        validate(payload, ChatCompletionRequest)
    assert caught.value.status == 400
    assert caught.value.param == param


def test_completion_prompt_forms() -> None:
    for prompt in ("text", ["a", "b"], [1, 2, 3], [[1, 2], [3]]):
        validate({"model": "m", "prompt": prompt}, CompletionRequest)
    with pytest.raises(APIError) as caught:
        validate({"model": "m", "prompt": {"x": 1}}, CompletionRequest)
    assert caught.value.param == "prompt"


def test_embedding_requires_input() -> None:
    with pytest.raises(APIError) as caught:
        validate({"model": "m"}, EmbeddingRequest)
    assert caught.value.param == "input"


@pytest.mark.parametrize("body", [b"", b"{", b"[]", b'"text"', b"\xff\xfe"])
def test_decode_object_rejects_non_objects(body: bytes) -> None:
    with pytest.raises(APIError) as caught:
        decode_object(body)
    assert caught.value.status == 400
    assert caught.value.code == "invalid_json"


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"max_tokens": 10**12}, "max_tokens"),  # llama-server would see it wrapped to a negative number
        ({"max_completion_tokens": 2**31}, "max_completion_tokens"),
        ({"logit_bias": {str(i): 1 for i in range(100_000)}}, "logit_bias"),
        ({"logit_bias": [[i, 1.0] for i in range(1000)]}, "logit_bias"),
        ({"stop": ["x"] * 1000}, "stop"),
        ({"stop": "x" * 5000}, "stop"),
        ({"n_probs": 100_000}, "n_probs"),
        ({"top_logprobs": 100_000}, "top_logprobs"),
        ({"model": "m" * 1_000_000}, "model"),
    ],
)
def test_what_reaches_an_engine_is_bounded(extra: dict, param: str) -> None:
    with pytest.raises(APIError) as refused:
        validate({"model": "m", "messages": [MESSAGE], **extra}, ChatCompletionRequest)
    assert refused.value.status == 400
    assert refused.value.param == param
    assert len(refused.value.message) < 500  # the offending value is not echoed back


def test_a_number_as_the_text_of_a_content_part_is_a_400() -> None:
    parts = [{"type": "text", "text": 5}]
    with pytest.raises(APIError) as refused:
        validate({"model": "m", "messages": [{"role": "user", "content": parts}]}, ChatCompletionRequest)
    assert refused.value.status == 400
    assert refused.value.param == "messages[0].content[0].text"
    images = [{"type": "image_url", "image_url": {"url": "data:,"}}, {"type": "text", "text": "what is it?"}]
    validate({"model": "m", "messages": [{"role": "user", "content": images}]}, ChatCompletionRequest)


def test_bounded_values_within_their_limits_pass() -> None:
    validate(
        {
            "model": "m",
            "messages": [MESSAGE],
            "max_tokens": 2**31 - 1,
            "logit_bias": {"15": -100},
            "stop": ["\n", "END"],
            "n_probs": 5,
        },
        ChatCompletionRequest,
    )
    validate({"model": "m", "prompt": "x", "logit_bias": [[15, False]], "stop": "."}, CompletionRequest)
