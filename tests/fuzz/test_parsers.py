"""Hypothesis over every parser fed by the outside world: whatever arrives, each one either parses or raises its
own documented error — never anything else (which would be a 500, a dead background task or a stuck loop).

Bounded for CI: each property runs a fixed number of examples, derandomized so a failure reproduces."""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelyard import sse
from modelyard.errors import APIError
from modelyard.evals.suite import SuiteError, load_suite
from modelyard.gateway.schemas import ChatCompletionRequest, CompletionRequest, EmbeddingRequest
from modelyard.gateway.upstream_call import engine_error, request_fault
from modelyard.jsonbody import decode_object, validate
from modelyard.observability.record_frames import FrameBuffer, FrameError
from modelyard.registry.gguf_header import GGUFHeaderError, read_gguf_header
from modelyard.routing.config import DeploymentsError, parse_deployments
from modelyard.security.guardrails.config import GuardrailConfigError, parse_config
from modelyard.security.request_limits import RouteLimits, check_request, clamp_to_context

BOUNDED = settings(
    max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow], database=None
)

scalars = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | st.text(max_size=20)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)
KEYS = [
    "model",
    "messages",
    "role",
    "content",
    "text",
    "type",
    "max_tokens",
    "stop",
    "logit_bias",
    "n",
    "tools",
    "stream",
    "stream_options",
    "prompt",
    "input",
    "top_logprobs",
    "logprobs",
    "n_probs",
    "response_format",
]
shaped = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(KEYS), inner, max_size=6),
    max_leaves=25,
)


@BOUNDED
@given(st.binary(max_size=400) | json_values.map(lambda v: yaml.safe_dump(v).encode()))
def test_json_bodies_are_objects_or_a_400(body: bytes) -> None:
    try:
        decode_object(body)
    except APIError as error:
        assert error.status == 400


@BOUNDED
@given(st.dictionaries(st.sampled_from(KEYS), shaped, max_size=8))
def test_request_bodies_validate_or_are_a_400_and_limits_never_crash(payload: dict[str, Any]) -> None:
    for schema in (ChatCompletionRequest, CompletionRequest, EmbeddingRequest):
        try:
            validate(dict(payload), schema)
        except APIError as error:
            assert error.status == 400 and len(error.message) < 2000
            continue
        try:
            check_request(payload, RouteLimits(max_messages=8, max_tokens=64), 512, "m")
        except APIError as error:
            assert error.status == 400
        clamp_to_context(dict(payload), 512)


@BOUNDED
@given(
    st.lists(
        st.binary(max_size=120) | st.sampled_from([b"data: ", b"\n\n", b"\r\n", b'{"usage":', b"[DONE]"]), max_size=12
    )
)
def test_sse_from_an_upstream_is_split_and_read_without_crashing(pieces: list[bytes]) -> None:
    splitter = sse.EventSplitter()
    for piece in pieces:
        for event in splitter.feed(piece):
            sse.carries_token(event)
            sse.usage_of_event(event)
            sse.is_usage_only(event)
    sse.usage_of_body(b"".join(pieces))
    splitter.remainder()


@BOUNDED
@given(st.integers(100, 599), st.binary(max_size=300) | json_values.map(lambda v: yaml.safe_dump(v).encode()))
def test_an_upstream_error_body_becomes_our_error(status: int, raw: bytes) -> None:
    request_fault(raw)
    error = engine_error("m", status, raw)
    assert 400 <= error.status < 600 and len(error.message) <= 1200


@BOUNDED
@given(st.lists(st.binary(max_size=64), max_size=10))
def test_record_frames_are_cut_or_refused(pieces: list[bytes]) -> None:
    frames = FrameBuffer()
    try:
        for piece in pieces:
            frames.feed(piece)
    except FrameError:
        pass


@BOUNDED
@given(st.binary(max_size=300), st.booleans())
def test_gguf_headers_parse_or_are_refused(tail: bytes, with_magic: bool) -> None:
    data = (b"GGUF\x03\x00\x00\x00" if with_magic else b"") + tail
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.gguf"
        path.write_bytes(data)
        with contextlib.suppress(GGUFHeaderError):
            read_gguf_header(path)


@BOUNDED
@given(st.text(max_size=300) | json_values.map(lambda v: yaml.safe_dump({"routes": v})))
def test_deployments_files_parse_or_name_the_problem(text: str) -> None:
    try:
        parse_deployments(text, "fuzz.yaml")
    except DeploymentsError as error:
        assert str(error).startswith("fuzz.yaml")


@BOUNDED
@given(json_values | st.dictionaries(st.just("routes"), st.dictionaries(st.text(max_size=5), json_values, max_size=3)))
def test_guardrails_files_parse_or_name_the_problem(data: Any) -> None:
    try:
        parse_config(data, "guardrails.yaml")
    except GuardrailConfigError as error:
        assert str(error).startswith("guardrails.yaml")


@BOUNDED
@given(st.binary(max_size=300) | json_values.map(lambda v: yaml.safe_dump(v).encode()))
def test_eval_suite_files_load_or_name_the_problem(raw: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "suite.yaml"
        path.write_bytes(raw)
        with contextlib.suppress(SuiteError):
            load_suite(path)
