"""The one vocabulary of client-visible errors: OpenAI-shaped, each with its status, type and code.

Every failure a client can see is built by one of the named constructors below, so the body is always
``{"error": {"message", "type", "param", "code"}}`` and the status matches what OpenAI's own API returns for the
same situation (SDKs then raise their usual exception types). Concepts that fail for their own reasons (the
registry, the key store, a config file) raise their own exceptions without HTTP codes; ``api/problems.py`` maps
those onto these constructors in one place. Nothing here imports the rest of modelyard.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import orjson

# The OpenAI ``type`` values this gateway uses.
INVALID_REQUEST = "invalid_request_error"
PERMISSION_DENIED = "permission_denied"
SERVICE_UNAVAILABLE = "service_unavailable_error"
API_ERROR = "api_error"


@dataclass(eq=False)
class APIError(Exception):
    status: int
    message: str
    type: str = INVALID_REQUEST
    code: str | None = None
    param: str | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__init__(self.message)

    def body(self) -> bytes:
        return error_body(self.message, self.type, self.code, self.param)

    @property
    def kind(self) -> str:
        """What the request log and metrics call this failure (the OpenAI ``code``, else its ``type``)."""
        return self.code or self.type


def error_body(message: str, type_: str, code: str | None = None, param: str | None = None) -> bytes:
    return orjson.dumps({"error": {"message": message, "type": type_, "param": param, "code": code}})


# -- the request itself ----------------------------------------------------------------------------------------------


def invalid_json(detail: str) -> APIError:
    return APIError(400, f"We could not parse the JSON body of your request: {detail}", code="invalid_json")


def invalid_field(message: str, param: str | None) -> APIError:
    return APIError(400, message, code="invalid_value" if param else "invalid_request", param=param)


def invalid_value(message: str, param: str | None = None) -> APIError:
    """A value the client sent that the gateway or one of its stores cannot accept."""
    return APIError(400, message, code="invalid_value", param=param)


def invalid_request(message: str, param: str | None = None) -> APIError:
    """A request the gateway cannot act on, for a reason that is not one field's value."""
    return APIError(400, message, code="invalid_request", param=param)


def body_too_large(limit: int) -> APIError:
    return APIError(413, f"Request body exceeds the limit of {limit} bytes.", code="request_too_large")


def too_many_messages(count: int, limit: int, route: str) -> APIError:
    return APIError(
        400, f"Too many messages: {count} > {limit} allowed for '{route}'.", code="too_many_messages", param="messages"
    )


def max_tokens_exceeded(param: str, requested: int, cap: int, route: str) -> APIError:
    return APIError(
        400, f"{param} = {requested} exceeds the cap of {cap} for '{route}'.", code="max_tokens_exceeded", param=param
    )


def context_length_exceeded(context_length: int, prompt_tokens: int, param: str) -> APIError:
    return APIError(
        400,
        f"This model's context is {context_length} tokens per request; the prompt alone is about {prompt_tokens} "
        "(estimated as characters / 4). Shorten it.",
        code="context_length_exceeded",
        param=param,
    )


def guardrail_blocked(guardrail: str, kinds: set[str], param: str) -> APIError:
    return APIError(
        400,
        f"The request was blocked by the '{guardrail}' guardrail (found: {', '.join(sorted(kinds))}).",
        code="guardrail_blocked",
        param=param,
    )


def output_blocked(guardrail: str) -> APIError:
    return APIError(
        400,
        f"The model's answer was withheld by the '{guardrail}' output guardrail.",
        type="content_filter",
        code="output_blocked",
    )


# -- what the request asks for -------------------------------------------------------------------------------------


def echoed(text: str, limit: int = 100) -> str:
    """A client's string as it is quoted back in an error: cut at ``limit`` characters (a client can send a megabyte
    of name; the error need not carry it back)."""
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} characters)"


def model_not_found(name: str, available: tuple[str, ...] | list[str], reason: str | None = None) -> APIError:
    listed = ", ".join(available) if available else "none"
    why = reason or f"The model '{echoed(name)}' does not exist or is not served here."
    return APIError(404, f"{why} Available models: {listed}.", code="model_not_found", param="model")


def embeddings_unsupported(model: str) -> APIError:
    return APIError(
        404,
        f"Embeddings are not supported by this deployment of '{model}'. Serve an embedding model "
        "(modelyard serve --embeddings) to enable /v1/embeddings.",
        code="unsupported_endpoint",
    )


def no_target_in_region(route: str, region: str | None, regions: list[str]) -> APIError:
    return APIError(
        400,
        f"Route '{route}' has no target in region '{region}' (regions: {', '.join(regions)}).",
        code="no_target_in_region",
        param="x-modelyard-region",
    )


def not_found_route(path: str) -> APIError:
    return APIError(404, f"Unknown route: {path}", code="unknown_url")


def method_not_allowed(method: str, path: str, allowed: list[str]) -> APIError:
    return APIError(
        405,
        f"Method {method} is not allowed on {path}",
        code="method_not_allowed",
        headers={"allow": ", ".join(allowed)},
    )


def not_available_here(what: str) -> APIError:
    """An endpoint of a part this process does not run (e.g. the registry admin API on a static gateway)."""
    return APIError(404, f"{what} is not available on this gateway.", code="unsupported_endpoint")


def not_found(message: str, param: str | None = None) -> APIError:
    return APIError(404, message, code="not_found", param=param)


def conflict(message: str, param: str | None = None) -> APIError:
    return APIError(409, message, code="conflict", param=param)


def promotion_gate_failed(message: str, param: str | None) -> APIError:
    return APIError(409, message, code="promotion_gate_failed", param=param)


def invalid_deployments(message: str, param: str | None) -> APIError:
    return APIError(400, message, code="invalid_deployments", param=param)


# -- who is asking -------------------------------------------------------------------------------------------------


def missing_api_key() -> APIError:
    return APIError(
        401,
        "You didn't provide an API key. Send it as 'Authorization: Bearer my-…' (or 'x-api-key').",
        code="invalid_api_key",
    )


def invalid_api_key(why: str) -> APIError:
    return APIError(401, why, code="invalid_api_key")


def insufficient_scope(key: str, needed: str, has: list[str]) -> APIError:
    return APIError(
        403,
        f"API key '{key}' lacks the '{needed}' scope needed here (it has: {', '.join(has)}).",
        type=PERMISSION_DENIED,
        code="insufficient_scope",
    )


def not_your_request(message: str) -> APIError:
    """Feedback on a request another key made: only that key (or an admin) may rate it."""
    return APIError(403, message, type=PERMISSION_DENIED, code="not_your_request", param="request_id")


def model_not_allowed(key: str, route: str) -> APIError:
    return APIError(
        403,
        f"API key '{key}' may not use model '{route}'.",
        type=PERMISSION_DENIED,
        code="model_not_allowed",
        param="model",
    )


def region_not_allowed(key: str, regions: tuple[str, ...], region: str) -> APIError:
    return APIError(
        403,
        f"API key '{key}' may only be served in regions {', '.join(regions)}; this gateway is in "
        f"'{region or 'unset'}'.",
        type=PERMISSION_DENIED,
        code="region_not_allowed",
        param="model",
    )


def rate_limited(
    key: str, what: str, limit: int, retry_after_s: float, tokens: bool, headers: dict[str, str]
) -> APIError:
    retry = max(1, math.ceil(retry_after_s))
    return APIError(
        429,
        f"Rate limit reached for API key '{key}': {what} (limit {limit}). Retry in {retry} s.",
        type="tokens" if tokens else "requests",
        code="rate_limit_exceeded",
        headers={"retry-after": str(retry), **headers},
    )


def request_over_tpm(key: str, estimate: int, tpm: int, headers: dict[str, str]) -> APIError:
    return APIError(
        429,
        f"This request needs about {estimate} tokens, more than API key '{key}' may use in a minute ({tpm}); "
        "lower max_tokens or the prompt.",
        type="tokens",
        code="rate_limit_exceeded",
        headers=headers,
    )


def budget_exceeded(
    key: str, what: str, period: str, retry_after_s: float, param: str, headers: dict[str, str]
) -> APIError:
    retry = math.ceil(retry_after_s)
    return APIError(
        429,
        f"API key '{key}' has exhausted its {what}; it resets at the start of the next {period} (UTC), in {retry} s.",
        type="insufficient_quota",
        code="budget_exceeded",
        param=param,
        headers={"retry-after": str(retry), **headers},
    )


def rate_limiter_unavailable() -> APIError:
    return APIError(
        503,
        "The rate limiter (Redis) is unavailable and this gateway fails closed; retry shortly.",
        type=SERVICE_UNAVAILABLE,
        code="rate_limiter_unavailable",
        headers={"retry-after": "1"},
    )


# -- engines and stores ----------------------------------------------------------------------------------------------


def engine_unavailable(model: str, retry_after_s: int, reason: str) -> APIError:
    return APIError(
        503,
        f"The engine serving '{model}' is not available right now ({reason}); retry in {retry_after_s} s.",
        type=SERVICE_UNAVAILABLE,
        code="engine_unavailable",
        headers={"retry-after": str(retry_after_s)},
    )


def queue_full(model: str, waiting: int, retry_after_s: int) -> APIError:
    return APIError(
        429,
        f"The engines serving '{model}' are busy and {waiting} requests already wait for them; retry in "
        f"{retry_after_s} s.",
        type="requests",  # OpenAI's type for request-rate 429s
        code="queue_full",
        headers={"retry-after": str(retry_after_s)},
    )


def upstream_failed(model: str, detail: str) -> APIError:
    return APIError(502, f"The engine serving '{model}' failed: {detail}", type=API_ERROR, code="upstream_error")


def engine_rejected(status: int, message: str, not_supported: bool) -> APIError:
    """The engine refused the request itself (a 4xx from it): passed on with the engine's status and words."""
    code = "not_supported" if not_supported else "engine_rejected_request"
    return APIError(status, message, code=code)


def store_unavailable(detail: str) -> APIError:
    """The registry database cannot be reached: admin calls fail fast while inference serves from memory."""
    return APIError(503, detail, type=SERVICE_UNAVAILABLE, code="registry_unavailable", headers={"retry-after": "5"})


def internal_error(request_id: str) -> APIError:
    return APIError(
        500,
        f"The gateway failed to handle this request (request id {request_id}); see its log.",
        type=API_ERROR,
        code="internal_error",
    )


def engine_limit(engine: str, what: str, param: str | None) -> APIError:
    """A parameter the target's engine kind cannot honour (rather than a silently wrong answer)."""
    return APIError(
        400, f"The {engine} engine serving this model cannot {what}.", code="unsupported_parameter", param=param
    )


def not_a_generative_model(model: str) -> APIError:
    return APIError(
        400,
        f"'{model}' is an embedding model: it answers /v1/embeddings, not chat or completions.",
        code="unsupported_endpoint",
        param="model",
    )


def n_over_cap(n: int, cap: int) -> APIError:
    return APIError(400, f"n = {n} exceeds this gateway's limit of {cap} (--max-n).", code="invalid_value", param="n")


# -- the web console -------------------------------------------------------------------------------------------------


def console_login_refused(why: str) -> APIError:
    """A console login whose key is unknown, revoked, expired or without the read scope (the page shows why)."""
    return APIError(401, why, code="invalid_api_key")


def console_login_throttled(retry_after_s: float) -> APIError:
    retry = max(1, math.ceil(retry_after_s))
    return APIError(
        429,
        f"Too many failed logins from this address. Wait {retry} s before trying again.",
        type="requests",
        code="rate_limit_exceeded",
        headers={"retry-after": str(retry)},
    )


def console_forbidden_origin() -> APIError:
    """A console change that did not come from the console's own page (CSRF token or origin missing or wrong)."""
    return APIError(
        403,
        "This change did not come from a console page of this session (its form token is missing or stale). "
        "Reload the page and try again.",
        type=PERMISSION_DENIED,
        code="csrf_failed",
    )


def console_session_ended(why: str) -> APIError:
    return APIError(401, why, code="session_ended")


def console_missing_reason() -> APIError:
    return APIError(400, "Forcing past failed gates needs a reason: type why.", code="invalid_value", param="reason")
