"""Structured output checked at the gateway: an answer to ``response_format`` ``json_object`` or ``json_schema``
is parsed and validated before the client sees it.

The engine constrains its sampler to the schema, but that does not make every answer valid: ``max_tokens`` can
cut it, and a grammar covers only part of JSON Schema (formats, some patterns). Such an answer is never passed
off as valid: its ``finish_reason`` says why (``length`` when cut, ``invalid_output`` otherwise) and the gateway
counts it (``modelyard_structured_output_invalid``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from modelyard.errors import invalid_value

INVALID_OUTPUT = "invalid_output"  # the finish_reason of a complete answer that does not validate


@dataclass(frozen=True)
class OutputFormat:
    kind: str  # "json_object" | "json_schema"
    schema: dict[str, Any] | None = None

    def problem(self, text: str) -> str | None:
        """Why ``text`` does not satisfy the format, or None when it does."""
        try:
            value = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            return f"not JSON: {exc}"
        if self.kind == "json_object":
            return None if isinstance(value, dict) else "not a JSON object"
        assert self.schema is not None
        error = next(iter(Draft202012Validator(self.schema).iter_errors(value)), None)
        return None if error is None else f"does not match the schema: {error.message}"


def output_format(response_format: Any) -> OutputFormat | None:
    """The format to check, from the request's validated ``response_format`` (None for plain text)."""
    if response_format is None or response_format.type == "text":
        return None
    if response_format.type == "json_object":
        return OutputFormat("json_object")
    spec = response_format.json_schema
    if spec is None:
        raise invalid_value("response_format json_schema needs a json_schema object.", "response_format.json_schema")
    schema = spec.schema or {"type": "object"}
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        raise invalid_value(f"Invalid JSON schema: {exc.message}", "response_format.json_schema.schema") from None
    return OutputFormat("json_schema", schema)


def finish_reason_for(engine_reason: str | None, problem: str | None) -> str | None:
    """What an answer's finish_reason becomes: unchanged when valid; ``length`` stays ``length`` (the SDKs know
    it means cut); anything else that does not validate is ``invalid_output``."""
    if problem is None or engine_reason == "length":
        return engine_reason
    return INVALID_OUTPUT
