"""OpenAI-shaped errors.

Every failure a client can see goes through :class:`APIError`, so the body is always
``{"error": {"message", "type", "param", "code"}}`` and the status code matches what OpenAI's own API returns
for the same situation; SDKs then raise their usual exception types.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import orjson


@dataclass(eq=False)
class APIError(Exception):
    status: int
    message: str
    type: str = "invalid_request_error"
    code: str | None = None
    param: str | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__init__(self.message)

    def body(self) -> bytes:
        return error_body(self.message, self.type, self.code, self.param)


def error_body(message: str, type_: str, code: str | None = None, param: str | None = None) -> bytes:
    return orjson.dumps({"error": {"message": message, "type": type_, "param": param, "code": code}})


def invalid_json(detail: str) -> APIError:
    return APIError(400, f"We could not parse the JSON body of your request: {detail}", code="invalid_json")


def invalid_field(message: str, param: str | None) -> APIError:
    return APIError(400, message, code="invalid_value" if param else "invalid_request", param=param)


def model_not_found(name: str, available: tuple[str, ...] | list[str], reason: str | None = None) -> APIError:
    listed = ", ".join(available) if available else "none"
    why = reason or f"The model '{name}' does not exist or is not served here."
    return APIError(
        404,
        f"{why} Available models: {listed}.",
        code="model_not_found",
        param="model",
    )


def body_too_large(limit: int) -> APIError:
    return APIError(413, f"Request body exceeds the limit of {limit} bytes.", code="request_too_large")


def engine_unavailable(model: str, retry_after_s: int, reason: str) -> APIError:
    return APIError(
        503,
        f"The engine serving '{model}' is not available right now ({reason}); retry in {retry_after_s} s.",
        type="service_unavailable_error",
        code="engine_unavailable",
        headers={"retry-after": str(retry_after_s)},
    )


def upstream_failed(model: str, detail: str) -> APIError:
    return APIError(502, f"The engine serving '{model}' failed: {detail}", type="api_error", code="upstream_error")


def store_unavailable(detail: str) -> APIError:
    """The registry database cannot be reached: admin calls fail fast while inference serves from memory."""
    return APIError(
        503, detail, type="service_unavailable_error", code="registry_unavailable", headers={"retry-after": "5"}
    )


def not_found_route(path: str) -> APIError:
    return APIError(404, f"Unknown route: {path}", code="unknown_url")


def method_not_allowed(method: str, path: str) -> APIError:
    return APIError(405, f"Method {method} is not allowed on {path}", code="method_not_allowed")


def internal_error(request_id: str) -> APIError:
    return APIError(
        500,
        f"The gateway failed to handle this request (request id {request_id}); see its log.",
        type="api_error",
        code="internal_error",
    )
