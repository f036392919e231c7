"""The OpenAPI 3.1 document served at ``/openapi.json``, derived from the endpoint table.

Every endpoint of ``api/endpoints.py`` appears here with its summary, tag, path and query parameters, request
body, required scope (public endpoints declare ``security: []``) and the links from its answer to the endpoints
that take a value of it (``api/links.py``). Request schemas are generated from the same
msgspec structs that validate the bodies, so the document cannot drift from what the gateway accepts; response
shapes are written out below.
"""

from __future__ import annotations

from typing import Any

import msgspec

from modelyard import __version__
from modelyard.api.endpoint import CONSOLE, METRICS, PARAMETERS, Endpoint, path_parameters
from modelyard.api.endpoints import ENDPOINTS
from modelyard.api.links import LINKS, check_links, link_objects

_REF = "#/components/schemas/{name}"
_SSE = {"text/event-stream": {"schema": {"type": "string"}}}

_RESPONSE_SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "properties": {
            "error": {
                "type": "object",
                "properties": {
                    "message": {"type": "string"},
                    "type": {"type": "string"},
                    "param": {"type": ["string", "null"]},
                    "code": {"type": ["string", "null"]},
                },
                "required": ["message", "type"],
            }
        },
    },
    "ModelVersion": {
        "type": "object",
        "properties": {
            "model": {"type": "string"},
            "number": {"type": "integer"},
            "key": {"type": "string", "description": "name:version"},
            "artifact_uri": {"type": "string"},
            "sha256": {"type": "string"},
            "size_bytes": {"type": "integer"},
            "format": {"type": "string"},
            "quantization": {"type": "string"},
            "architecture": {"type": "string"},
            "parameter_count": {"type": ["integer", "null"]},
            "context_length": {"type": ["integer", "null"]},
            "license": {"type": "string"},
            "base_model": {"type": "string"},
            "parent": {"type": ["string", "null"]},
            "training_data": {"type": "array", "items": {"type": "string"}},
            "fine_tuning_data": {"type": "array", "items": {"type": "string"}},
            "lineage_notes": {"type": "string"},
            "header": {"type": "object"},
            "created_by": {"type": "string"},
            "created_at": {"type": "string", "format": "date-time"},
            "archived_at": {"type": ["string", "null"], "format": "date-time"},
            "archived_by": {"type": ["string", "null"]},
        },
    },
    "RegisteredModel": {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "description": {"type": "string"},
            "owner": {"type": "string"},
            "tags": {"type": "object", "additionalProperties": {"type": "string"}},
            "aliases": {"type": "object", "additionalProperties": {"type": "integer"}},
            "versions": {"type": "array", "items": {"$ref": _REF.format(name="ModelVersion")}},
            "created_by": {"type": "string"},
            "created_at": {"type": "string", "format": "date-time"},
        },
    },
    "AliasMove": {
        "type": "object",
        "properties": {
            "model": {"type": "string"},
            "alias": {"type": "string"},
            "from_version": {"type": ["integer", "null"]},
            "to_version": {"type": "integer"},
            "event_id": {"type": "integer"},
        },
    },
    "RegistryEvent": {
        "type": "object",
        "properties": {
            "id": {"type": "integer"},
            "model": {"type": "string"},
            "kind": {
                "type": "string",
                "enum": [
                    "model_created",
                    "model_updated",
                    "version_registered",
                    "alias_moved",
                    "alias_removed",
                    "version_archived",
                    "integrity_failed",
                ],
            },
            "version": {"type": ["integer", "null"]},
            "alias": {"type": ["string", "null"]},
            "from_version": {"type": ["integer", "null"]},
            "to_version": {"type": ["integer", "null"]},
            "actor": {"type": "string"},
            "at": {"type": "string", "format": "date-time"},
            "detail": {"type": "object"},
            "summary": {"type": "string"},
        },
    },
    "ApiKey": {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "name": {"type": "string"},
            "prefix": {"type": "string", "description": "first characters of the secret, for telling keys apart"},
            "scopes": {"type": "array", "items": {"type": "string", "enum": ["inference", "admin", "read"]}},
            "models": {"type": "array", "items": {"type": "string"}},
            "regions": {"type": "array", "items": {"type": "string"}},
            "limits": {"type": "object"},
            "status": {"type": "string", "enum": ["active", "revoked", "expired"]},
            "expires_at": {"type": ["string", "null"], "format": "date-time"},
            "revoked_at": {"type": ["string", "null"], "format": "date-time"},
            "key": {"type": "string", "description": "the secret: only in the answer to POST /admin/keys"},
        },
    },
    "Feedback": {
        "type": "object",
        "properties": {
            "object": {"type": "string", "enum": ["feedback"]},
            "request_id": {"type": "string"},
            "route": {"type": "string"},
            "model": {"type": "string"},
            "version": {"type": "string"},
            "target": {"type": "string", "description": "the engine (arm) that served the rated answer"},
            "score": {"type": "number", "minimum": 0, "maximum": 1, "description": "scaled: 1 = best"},
            "raw": {"type": "string", "description": "the score as sent: up, down or the number"},
            "comment": {"type": ["string", "null"]},
            "created_at": {"type": "string", "format": "date-time"},
            "updated_at": {"type": "string", "format": "date-time"},
        },
    },
    "Rollout": {
        "type": "object",
        "properties": {
            "object": {"type": "string", "enum": ["rollout"]},
            "id": {"type": "integer"},
            "route": {"type": "string"},
            "model": {"type": "string"},
            "control_version": {"type": "integer"},
            "candidate_version": {"type": "integer"},
            "steps": {"type": "array", "items": {"type": "integer"}},
            "step": {"type": "integer", "description": "index into steps"},
            "share": {"type": "integer", "description": "the candidate's percentage now"},
            "state": {"type": "string", "enum": ["running", "paused", "promoted", "rolled_back", "aborted"]},
            "reason": {"type": "string"},
            "plan": {"type": "object"},
            "created_by": {"type": "string"},
            "started_at": {"type": "string", "format": "date-time"},
            "step_started_at": {"type": "string", "format": "date-time"},
            "updated_at": {"type": "string", "format": "date-time"},
            "last_decision": {"type": ["object", "null"]},
        },
    },
    "Response": {
        "type": "object",
        "required": ["id", "object"],
        "properties": {
            "id": {"type": "string"},
            "object": {"type": "string", "enum": ["response"]},
            "created_at": {"type": "integer"},
            "status": {"type": "string"},
            "model": {"type": "string"},
            "output": {"type": "array"},
            "previous_response_id": {"type": ["string", "null"]},
        },
    },
    "DeletedResponse": {
        "type": "object",
        "required": ["id", "object", "deleted"],
        "properties": {
            "id": {"type": "string"},
            "object": {"type": "string", "enum": ["response"]},
            "deleted": {"type": "boolean"},
        },
    },
    "File": {
        "type": "object",
        "required": ["id", "object"],
        "properties": {
            "id": {"type": "string"},
            "object": {"type": "string", "enum": ["file"]},
            "bytes": {"type": "integer"},
            "created_at": {"type": "integer"},
            "expires_at": {"type": "integer"},
            "filename": {"type": "string"},
            "purpose": {"type": "string"},
            "status": {"type": "string"},
        },
    },
    "Batch": {
        "type": "object",
        "required": ["id", "object", "status"],
        "properties": {
            "id": {"type": "string"},
            "object": {"type": "string", "enum": ["batch"]},
            "endpoint": {"type": "string"},
            "input_file_id": {"type": "string"},
            "completion_window": {"type": "string"},
            "status": {
                "type": "string",
                "enum": [
                    "validating",
                    "in_progress",
                    "finalizing",
                    "completed",
                    "failed",
                    "expired",
                    "cancelling",
                    "cancelled",
                ],
            },
            "output_file_id": {"type": ["string", "null"]},
            "error_file_id": {"type": ["string", "null"]},
            "request_counts": {"type": "object"},
            "metadata": {"type": ["object", "null"]},
        },
    },
    "AuditVerify": {
        "type": "object",
        "properties": {
            "ok": {"type": "boolean"},
            "checked": {"type": "integer"},
            "head_id": {"type": "integer"},
            "head_hash": {"type": "string"},
            "problem": {"type": ["string", "null"]},
            "record_id": {"type": ["integer", "null"]},
        },
    },
}


def openapi_document(metrics_public: bool = True) -> dict[str, Any]:
    check_links(LINKS, ENDPOINTS)
    structs = []
    for endpoint in ENDPOINTS:
        if endpoint.body is not None and endpoint.body not in structs:
            structs.append(endpoint.body)
    _, request_schemas = msgspec.json.schema_components(structs, ref_template=_REF)
    paths: dict[str, Any] = {}
    for endpoint in ENDPOINTS:
        paths.setdefault(endpoint.path, {})[endpoint.method.lower()] = _operation(endpoint, metrics_public)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "modelyard",
            "version": __version__,
            "description": "OpenAI-compatible inference gateway and model registry.",
        },
        "paths": paths,
        "components": {
            "schemas": {**request_schemas, **_RESPONSE_SCHEMAS},
            "securitySchemes": {
                "apiKey": {"type": "http", "scheme": "bearer", "description": "my-… API key"},
                "consoleSession": {
                    "type": "apiKey",
                    "in": "cookie",
                    "name": "modelyard_console",
                    "description": "The web console's session (POST /console/login with an API key)",
                },
            },
        },
        "security": [{"apiKey": []}],
    }


def _operation(endpoint: Endpoint, metrics_public: bool) -> dict[str, Any]:
    ok: dict[str, Any] = {"description": "OK"}
    if endpoint.response is not None:
        ok["content"] = {**_json(endpoint.response), **(_SSE if endpoint.streams else {})}
    elif endpoint.streams:
        ok["content"] = {"application/json": {"schema": {"type": "object"}}, **_SSE}
    links = link_objects(LINKS, f"{endpoint.method} {endpoint.path}")
    if links:
        ok["links"] = links
    operation: dict[str, Any] = {
        "summary": endpoint.summary,
        "tags": [endpoint.tag],
        "responses": {
            str(endpoint.status): ok,
            "default": {"description": "OpenAI-shaped error", "content": _json("Error")},
        },
    }
    parameters = [
        {"name": name, "in": "path", "required": True, "schema": PARAMETERS[name].schema}
        for name in path_parameters(endpoint.path)
    ]
    schemas = endpoint.query_schemas or {}
    parameters += [
        {"name": name, "in": "query", "required": False, "schema": schemas.get(name, {"type": "string"})}
        for name in endpoint.query
    ]
    if parameters:
        operation["parameters"] = parameters
    if endpoint.body is not None:
        operation["requestBody"] = {"required": True, "content": _json(endpoint.body.__name__)}
    elif endpoint.body_content is not None:
        operation["requestBody"] = {"required": True, "content": endpoint.body_content}
    if endpoint.scope is None or (endpoint.scope == METRICS and metrics_public):
        operation["security"] = []
    elif endpoint.scope == CONSOLE:
        operation["security"] = [{"consoleSession": []}]
    return operation


def _json(schema: str) -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": _REF.format(name=schema)}}}
