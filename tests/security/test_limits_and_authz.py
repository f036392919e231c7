"""Pure decisions: token-bucket math, the in-memory limiter, request-shape limits and authorization."""

from __future__ import annotations

import asyncio

import pytest

from modelyard.api.endpoint import needed_scope
from modelyard.api.endpoints import ENDPOINTS
from modelyard.api.router import Router
from modelyard.errors import APIError
from modelyard.security.authz import authenticate, authorize_route, authorize_scope
from modelyard.security.keys import KeyGrant, KeyLimits
from modelyard.security.ratelimit import (
    CONCURRENCY,
    RPM,
    TOKEN_BUDGET,
    TPM,
    Bucket,
    MemoryLimiter,
    ratelimit_headers,
    refill,
    take,
)
from modelyard.security.request_limits import (
    RouteLimits,
    apply_route_cap,
    check_request,
    clamp_to_context,
    prompt_chars,
)


def test_bucket_refills_at_limit_per_minute_and_never_above_capacity() -> None:
    bucket = refill(Bucket(0, 100.0), 106.0, 60)  # 60/min = 1 per second
    assert bucket.tokens == pytest.approx(6)
    assert refill(Bucket(50, 0.0), 1000.0, 60).tokens == 60


def test_take_reports_the_wait_until_enough_tokens() -> None:
    assert take(Bucket(2, 0), 5, 60) == (False, pytest.approx(3.0))
    assert take(Bucket(10, 0), 5, 60) == (True, 0.0)
    assert take(Bucket(60, 0), 61, 60)[1] == float("inf")


def _run(coro):
    return asyncio.run(coro)


def test_memory_limiter_allows_exactly_rpm_in_a_burst() -> None:
    limiter, limits = MemoryLimiter(), KeyLimits(rpm=5)
    outcomes = [_run(limiter.acquire("k", limits, 1, f"r{i}", 1000.0)) for i in range(8)]
    assert [o.allowed for o in outcomes] == [True] * 5 + [False] * 3
    assert outcomes[5].reason == RPM and outcomes[5].retry_after_s == pytest.approx(12.0)
    headers = dict(ratelimit_headers(limits, outcomes[4]))
    assert headers[b"x-ratelimit-limit-requests"] == b"5" and headers[b"x-ratelimit-remaining-requests"] == b"0"


def test_tpm_is_reconciled_with_actual_usage() -> None:
    limiter, limits = MemoryLimiter(), KeyLimits(tpm=100)
    assert _run(limiter.acquire("k", limits, 80, "a", 0.0)).allowed
    assert not _run(limiter.acquire("k", limits, 80, "b", 0.0)).allowed  # 20 left
    _run(limiter.release("k", limits, "a", 80, 10, 0.0, 0.0))  # it used only 10: 70 refunded
    outcome = _run(limiter.acquire("k", limits, 80, "c", 0.0))
    assert outcome.allowed and outcome.tpm_remaining == 10
    refused = _run(limiter.acquire("k", limits, 80, "d", 0.0))
    assert refused.reason == TPM


def test_concurrency_slots_are_released() -> None:
    limiter, limits = MemoryLimiter(), KeyLimits(concurrency=2)
    assert _run(limiter.acquire("k", limits, 1, "a", 0.0)).allowed
    assert _run(limiter.acquire("k", limits, 1, "b", 0.0)).allowed
    assert _run(limiter.acquire("k", limits, 1, "c", 0.0)).reason == CONCURRENCY
    _run(limiter.release("k", limits, "a", 1, 1, 0.0, 0.0))
    assert _run(limiter.acquire("k", limits, 1, "c", 0.0)).allowed


def test_token_budget_refuses_once_spent() -> None:
    limiter, limits = MemoryLimiter(), KeyLimits(token_budget=100, budget_period="day")
    assert _run(limiter.acquire("k", limits, 10, "a", 0.0)).allowed
    _run(limiter.release("k", limits, "a", 10, 100, 0.0, 0.0))
    refused = _run(limiter.acquire("k", limits, 10, "b", 1.0))
    assert not refused.allowed and refused.reason == TOKEN_BUDGET
    assert 0 < refused.retry_after_s <= 86400


def test_request_shape_limits() -> None:
    chat = {"messages": [{"role": "user", "content": "x" * 400}] * 3, "max_tokens": 50}
    assert check_request(chat, RouteLimits(), 1000, "m") == 300 + 50
    with pytest.raises(APIError, match="Too many messages") as caught:
        check_request(chat, RouteLimits(max_messages=2), None, "m")
    assert caught.value.param == "messages"
    with pytest.raises(APIError) as caught:
        check_request(chat, RouteLimits(max_tokens=10), None, "m")
    assert caught.value.code == "max_tokens_exceeded" and caught.value.param == "max_tokens"
    with pytest.raises(APIError) as caught:
        check_request(chat, RouteLimits(), 200, "m")  # ~300 prompt tokens
    assert caught.value.code == "context_length_exceeded"
    assert check_request({**chat, "max_tokens": 5000}, RouteLimits(), 400, "m")  # stops at the context: allowed


@pytest.mark.parametrize(
    ("method", "path", "scope"),
    [
        ("POST", "/v1/chat/completions", "inference"),
        ("GET", "/v1/models", "inference"),
        ("GET", "/admin/keys", "read"),
        ("HEAD", "/admin/models", "read"),
        ("POST", "/admin/keys", "admin"),
        ("PUT", "/admin/guardrails", "admin"),
        ("GET", "/health", None),
        ("GET", "/ready", None),
        ("GET", "/openapi.json", None),
        ("GET", "/metrics", None),
        ("GET", "/nope", None),
    ],
)
def test_required_scope(method: str, path: str, scope: str | None) -> None:
    assert required_scope(method, path) == scope


def test_metrics_can_require_read() -> None:
    assert required_scope("GET", "/metrics", metrics_public=False) == "read"


def required_scope(method: str, path: str, metrics_public: bool = True) -> str | None:
    """The scope the endpoint table asks for (None: public, or no such endpoint: the router's 404)."""
    try:
        endpoint, _ = Router((e.method, e.path, e) for e in ENDPOINTS).match(method, path)
    except APIError as error:
        assert error.status == 404
        return None
    return needed_scope(endpoint, metrics_public)


def test_authentication_and_scope_decisions() -> None:
    grant = KeyGrant("key_1", "ci", frozenset({"admin"}), expires_at=100.0)
    missing = authenticate(None, False, 0)
    assert missing is not None and missing.status == 401
    unknown = authenticate(None, True, 0)
    assert unknown is not None and "Incorrect" in unknown.message
    assert authenticate(grant, True, 50) is None
    expired = authenticate(grant, True, 100)
    assert expired is not None and "expired" in expired.message
    assert authorize_scope(grant, "read") is None  # admin includes read
    denied = authorize_scope(grant, "inference")
    assert denied is not None and denied.status == 403 and denied.code == "insufficient_scope"


def test_model_and_region_allow_lists() -> None:
    grant = KeyGrant("key_1", "ci", frozenset({"inference"}), models=("gemma-*",), regions=("eu-west",))
    assert authorize_route(grant, "gemma-3-270m@canary", "gemma-3-270m", "eu-west") is None
    model = authorize_route(grant, "llama", "llama", "eu-west")
    assert model is not None and model.code == "model_not_allowed"
    region = authorize_route(grant, "gemma-3-270m", "gemma-3-270m", "us-east")
    assert region is not None and region.code == "region_not_allowed"


def test_content_parts_without_string_text_count_as_no_text() -> None:
    parts = [{"type": "text", "text": 5}, {"type": "image_url"}, "odd", {"type": "text", "text": "abcd"}]
    assert prompt_chars({"messages": [{"role": "user", "content": parts}]}) == 4


def test_max_tokens_above_the_whole_context_is_lowered_to_it() -> None:
    payload = {"max_tokens": 10**9, "max_completion_tokens": 300}
    assert clamp_to_context(payload, 512) is True
    assert payload == {"max_tokens": 512, "max_completion_tokens": 300}
    assert clamp_to_context(payload, 512) is False


def test_a_route_cap_is_the_max_tokens_of_a_request_that_gives_none() -> None:
    """Without it a capped route still let a count-less request write until the context was full."""
    capped = RouteLimits(max_tokens=8)
    chat = {"messages": [{"role": "user", "content": "Hi"}]}
    assert apply_route_cap(chat, capped) is True and chat["max_tokens"] == 8
    completion = {"prompt": "Hi"}
    assert apply_route_cap(completion, capped) is True and completion["max_tokens"] == 8
    named = {"prompt": "Hi", "max_completion_tokens": 3}
    assert apply_route_cap(named, capped) is False and "max_tokens" not in named  # the request's own count stays
    embedding = {"input": "Hi"}
    assert apply_route_cap(embedding, capped) is False and embedding == {"input": "Hi"}
    assert apply_route_cap({"prompt": "Hi"}, RouteLimits()) is False  # no cap: the engine's default
