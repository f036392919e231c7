"""Request bodies that are not a msgspec struct (JSON objects read by hand, multipart uploads, YAML), as
``/openapi.json`` describes them: kept apart from the endpoint table (``api/endpoints.py``), which names them."""

from __future__ import annotations

from typing import Any

from modelyard.batches.lines import ENDPOINTS as BATCH_ENDPOINTS
from modelyard.batches.store import WINDOWS


def _object(required: tuple[str, ...], **properties: Any) -> dict[str, Any]:
    return {"type": "object", "required": list(required), "properties": properties}


RESPONSES_BODY = {
    "application/json": {
        "schema": _object(
            ("model",),
            model={"type": "string"},
            input={"type": ["string", "array"]},
            instructions={"type": "string"},
            previous_response_id={"type": "string"},
            store={"type": "boolean"},
            stream={"type": "boolean"},
        )
    }
}
FILE_BODY = {
    "multipart/form-data": {
        "schema": _object(
            ("file", "purpose"),
            file={"type": "string", "format": "binary"},
            purpose={"type": "string", "enum": ["batch"]},
        )
    }
}
BATCH_BODY = {
    "application/json": {
        "schema": _object(
            ("input_file_id", "endpoint"),
            input_file_id={"type": "string"},
            endpoint={"type": "string", "enum": list(BATCH_ENDPOINTS)},
            completion_window={"type": "string", "enum": list(WINDOWS)},
            metadata={"type": "object"},
        )
    }
}

FEEDBACK_BODY = {
    "application/json": {
        "schema": {
            "type": "object",
            "required": ["request_id", "score"],
            "additionalProperties": False,
            "properties": {
                "request_id": {"type": "string", "minLength": 1, "maxLength": 128, "description": "x-request-id"},
                "score": {
                    "oneOf": [{"type": "string", "enum": ["up", "down"]}, {"type": "number"}],
                    "description": "a thumb, or a number within --feedback-min .. --feedback-max",
                },
                "comment": {"type": "string", "maxLength": 4000},
            },
        }
    }
}

ROLLOUT_BODY = {
    "application/json": {
        "schema": {
            "type": "object",
            "required": ["route", "candidate"],
            "properties": {
                "route": {"type": "string", "description": "the route (model id clients send) to move"},
                "candidate": {"type": "string", "description": "MODEL:VERSION"},
                "plan": {"type": "object", "description": "steps, guardrails, alpha, min_sample, ... (docs)"},
            },
        }
    }
}


DEPLOYMENTS_BODY = {
    "application/yaml": {"schema": {"type": "string"}},
    "application/json": {"schema": {"type": "object"}},
}
