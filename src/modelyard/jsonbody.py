"""Request bodies as data: JSON that must be an object, converted to a typed struct, with errors that name the field.

Used by every endpoint that takes a body (inference and admin alike), so a bad body reads the same everywhere:
a 400 whose ``param`` is the offending field's path, e.g. ``messages[0].role``.
"""

from __future__ import annotations

import re
from typing import Any, TypeVar

import msgspec
import orjson

from modelyard.errors import APIError, invalid_field, invalid_json

_MISSING_RE = re.compile(r"Object missing required field `([^`]+)`(?: - at `\$(.*)`)?")
_AT_RE = re.compile(r" - at `\$(.*)`$")

StructT = TypeVar("StructT", bound=msgspec.Struct)


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


def validate(payload: dict[str, Any], schema: type[StructT], strict: bool = True) -> StructT:
    """``strict=False`` accepts numbers and booleans spelled as strings (query strings)."""
    try:
        return msgspec.convert(payload, schema, strict=strict)
    except msgspec.ValidationError as exc:
        raise _to_api_error(str(exc)) from None


def decode(body: bytes, schema: type[StructT]) -> StructT:
    """A JSON object body, validated against ``schema``."""
    return validate(decode_object(body), schema)


def _to_api_error(message: str) -> APIError:
    missing = _MISSING_RE.match(message)
    if missing:
        field_name, at = missing.group(1), missing.group(2) or ""
        param = (at + "." + field_name).lstrip(".")
        return invalid_field(f"Missing required parameter: '{param}'.", param)
    at = _AT_RE.search(message)
    param = at.group(1).lstrip(".") if at else None
    text = _AT_RE.sub("", message)
    return invalid_field(f"Invalid value for '{param}': {text}." if param else f"Invalid request: {text}.", param)
