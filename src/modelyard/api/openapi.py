"""The OpenAPI 3.1 document served at ``/openapi.json``.

Request schemas are generated from the same msgspec structs that validate requests, so the document cannot
drift from what the gateway accepts; response shapes are written out here.
"""

from __future__ import annotations

from typing import Any

import msgspec

from modelyard import __version__
from modelyard.api.admin_schemas import MoveAlias, Promote, RegisterVersion, Rollback, UpdateModel
from modelyard.gateway.schemas import ChatCompletionRequest, CompletionRequest, EmbeddingRequest
from modelyard.security.openapi_paths import RESPONSE_SCHEMAS as SECURITY_RESPONSES
from modelyard.security.openapi_paths import SECURITY_SCHEMES, security_paths
from modelyard.security.openapi_paths import request_schemas as security_request_schemas

_REF = "#/components/schemas/{name}"

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
}


def _json(schema: str) -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": _REF.format(name=schema)}}}


def _op(summary: str, response: str | None, body: str | None = None, status: str = "200", **extra: Any) -> dict:
    responses: dict[str, Any] = {
        status: {"description": "OK", **({"content": _json(response)} if response else {})},
        "default": {"description": "OpenAI-shaped error", "content": _json("Error")},
    }
    operation: dict[str, Any] = {"summary": summary, "responses": responses, **extra}
    if body is not None:
        operation["requestBody"] = {"required": True, "content": _json(body)}
    return operation


def _params(*names: str) -> list[dict[str, Any]]:
    kinds = {"version": {"type": "integer", "minimum": 1}}
    return [{"name": n, "in": "path", "required": True, "schema": kinds.get(n, {"type": "string"})} for n in names]


def _query(*names: str) -> list[dict[str, Any]]:
    return [{"name": n, "in": "query", "required": False, "schema": {"type": "string"}} for n in names]


def openapi_document() -> dict[str, Any]:
    _, request_schemas = msgspec.json.schema_components(
        [
            ChatCompletionRequest,
            CompletionRequest,
            EmbeddingRequest,
            RegisterVersion,
            UpdateModel,
            MoveAlias,
            Promote,
            Rollback,
        ],
        ref_template=_REF,
    )
    admin = {"tags": ["admin"]}
    inference = {"tags": ["inference"]}
    name, name_version, name_alias = _params("name"), _params("name", "version"), _params("name", "alias")
    sse = {"text/event-stream": {"schema": {"type": "string"}}}
    paths: dict[str, Any] = {
        "/v1/chat/completions": {
            "post": _op("Chat completion (SSE when stream=true)", None, "ChatCompletionRequest", **inference)
        },
        "/v1/completions": {
            "post": _op("Text completion (SSE when stream=true)", None, "CompletionRequest", **inference)
        },
        "/v1/embeddings": {"post": _op("Embeddings", None, "EmbeddingRequest", **inference)},
        "/v1/models": {"get": _op("Model ids this gateway serves (name, name@alias, name:version)", None, **inference)},
        "/v1/models/{model}": {"get": _op("One served model id", None, parameters=_params("model"), **inference)},
        "/admin/models": {
            "get": _op("List registered models", None, **admin),
            "post": _op(
                "Register a GGUF on the gateway host as a new version",
                "ModelVersion",
                "RegisterVersion",
                status="201",
                **admin,
            ),
        },
        "/admin/models/{name}": {
            "get": _op("A model with its versions and aliases", "RegisteredModel", parameters=name, **admin),
            "patch": _op(
                "Change description, owner or tags (e.g. prices)",
                "RegisteredModel",
                "UpdateModel",
                parameters=name,
                **admin,
            ),
        },
        "/admin/models/{name}/versions/{version}": {
            "get": _op("One version", "ModelVersion", parameters=name_version, **admin)
        },
        "/admin/models/{name}/versions/{version}/archive": {
            "post": _op(
                "Archive a version (refused while an alias points at it)",
                "ModelVersion",
                parameters=name_version,
                **admin,
            )
        },
        "/admin/models/{name}/aliases/{alias}": {
            "put": _op("Point an alias at a version", "AliasMove", "MoveAlias", parameters=name_alias, **admin),
            "delete": _op("Remove an alias", "RegistryEvent", parameters=name_alias, **admin),
        },
        "/admin/models/{name}/promote": {
            "post": _op(
                "Move 'production' (or another alias) to a version", "AliasMove", "Promote", parameters=name, **admin
            )
        },
        "/admin/models/{name}/rollback": {
            "post": _op("Move an alias back to its previous version", "AliasMove", "Rollback", parameters=name, **admin)
        },
        "/admin/models/{name}/events": {"get": _op("Append-only history of a model", None, parameters=name, **admin)},
        "/admin/models/{name}/gates": {
            "get": _op("Promotion gates of a model", None, parameters=name, **admin),
            "put": _op("Replace promotion gates (JSON form of the gates YAML)", None, parameters=name, **admin),
            "delete": _op("Remove promotion gates", None, parameters=name, **admin),
        },
        "/admin/models/{name}/card": {
            "get": _op("Model card (JSON, or Markdown with format=md)", None, parameters=name, **admin)
        },
        "/admin/serving": {
            "get": _op("What this gateway serves now: routes, engines, registry revision", None, **admin)
        },
        "/admin/requests": {
            "get": _op(
                "Stored request log, newest first (filters: route, model, version, status, since, until, limit, "
                "shadow, bodies)",
                None,
                parameters=_query("route", "model", "version", "status", "since", "until", "limit", "shadow", "bodies"),
                **admin,
            )
        },
        "/admin/requests/export": {
            "get": _op(
                "The request log as JSON lines (same filters; everything unless limit is given)",
                None,
                parameters=_query("route", "model", "version", "status", "since", "until", "limit", "shadow", "bodies"),
                **admin,
            )
        },
        "/admin/shadow": {
            "get": _op(
                "Shadow copies side by side with their primaries (same filters as /admin/requests)",
                None,
                parameters=_query("route", "since", "until", "limit", "bodies"),
                **admin,
            )
        },
        "/admin/deployments": {
            "get": _op(
                "The deployments file, when it was applied, the last refusal and what each route serves", None, **admin
            ),
            "put": {
                **_op("Replace the whole deployments file: validated, applied atomically, then saved", None, **admin),
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/yaml": {"schema": {"type": "string"}},
                        "application/json": {"schema": {"type": "object"}},
                    },
                },
            },
        },
        "/health": {"get": _op("Liveness", None, tags=["operations"], security=[])},
        "/ready": {
            "get": _op("Readiness (503 until every served engine is ready)", None, tags=["operations"], security=[])
        },
        "/metrics": {"get": _op("Prometheus metrics", None, tags=["operations"])},
    }
    paths.update(security_paths(_op))  # keys, spend, guardrails, audit (security/openapi_paths.py)
    for path in ("/v1/chat/completions", "/v1/completions"):
        paths[path]["post"]["responses"]["200"]["content"] = {"application/json": {"schema": {"type": "object"}}, **sse}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "modelyard",
            "version": __version__,
            "description": "OpenAI-compatible inference gateway and model registry.",
        },
        "paths": paths,
        "components": {
            "schemas": {**request_schemas, **_RESPONSE_SCHEMAS, **security_request_schemas(), **SECURITY_RESPONSES},
            "securitySchemes": SECURITY_SCHEMES,
        },
        "security": [{"apiKey": []}],
    }
