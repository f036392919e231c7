"""What a valid OpenAI request looks like, checked at the edge.

Only the fields the gateway relies on or that engines choke on are typed; unknown fields pass through untouched
so engine-specific parameters (``top_k``, ``min_p``, ``grammar``, ...) keep working. Validation errors are turned
into OpenAI's shape with ``param`` naming the offending field, e.g. ``messages[0].role``.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, TypeVar

import msgspec
import orjson

from modelyard.errors import APIError, invalid_field, invalid_json

PositiveInt = Annotated[int, msgspec.Meta(ge=1)]
Temperature = Annotated[float, msgspec.Meta(ge=0, le=2)]
Probability = Annotated[float, msgspec.Meta(ge=0, le=1)]
Penalty = Annotated[float, msgspec.Meta(ge=-2, le=2)]
ModelName = Annotated[str, msgspec.Meta(min_length=1)]


class StreamOptions(msgspec.Struct):
    include_usage: bool = False


class ChatMessage(msgspec.Struct):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None


class _SamplingFields(msgspec.Struct):
    model: ModelName
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: PositiveInt | None = None
    temperature: Temperature | None = None
    top_p: Probability | None = None
    n: Annotated[int, msgspec.Meta(ge=1, le=1)] | None = None
    presence_penalty: Penalty | None = None
    frequency_penalty: Penalty | None = None
    seed: int | None = None
    stop: str | list[str] | None = None
    user: str | None = None


class ChatCompletionRequest(_SamplingFields, kw_only=True):  # kw_only: a required field after inherited defaults
    messages: Annotated[list[ChatMessage], msgspec.Meta(min_length=1)]
    max_completion_tokens: PositiveInt | None = None


class CompletionRequest(_SamplingFields, kw_only=True):
    prompt: str | list[str | int | list[int]]


class EmbeddingRequest(msgspec.Struct):
    model: ModelName
    input: str | list[str | int | list[int]]
    encoding_format: Literal["float", "base64"] | None = None


_MISSING_RE = re.compile(r"Object missing required field `([^`]+)`(?: - at `\$(.*)`)?")
_AT_RE = re.compile(r" - at `\$(.*)`$")


def decode_object(body: bytes) -> dict[str, Any]:
    """Parse a JSON body that must be an object; raise a 400 that says what is wrong with it."""
    if not body:
        raise invalid_json("the body is empty")
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise invalid_json(str(exc)) from None
    if not isinstance(payload, dict):
        raise invalid_json(f"expected a JSON object, got {type(payload).__name__}")
    return payload


StructT = TypeVar("StructT", bound=msgspec.Struct)


def validate(payload: dict[str, Any], schema: type[StructT], strict: bool = True) -> StructT:
    """``strict=False`` accepts numbers and booleans spelled as strings (query strings)."""
    try:
        return msgspec.convert(payload, schema, strict=strict)
    except msgspec.ValidationError as exc:
        raise _to_api_error(str(exc)) from None


def _to_api_error(message: str) -> APIError:
    missing = _MISSING_RE.match(message)
    if missing:
        field_name, at = missing.group(1), missing.group(2) or ""
        param = _param_from_path(at + "." + field_name)
        return invalid_field(f"Missing required parameter: '{param}'.", param)
    at = _AT_RE.search(message)
    param = _param_from_path(at.group(1)) if at else None
    text = _AT_RE.sub("", message)
    return invalid_field(f"Invalid value for '{param}': {text}." if param else f"Invalid request: {text}.", param)


def _param_from_path(path: str) -> str:
    return path.lstrip(".")
