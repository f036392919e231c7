"""The security layer's part of ``/openapi.json``: key, spend, guardrail and audit endpoints, and the bearer-key
security scheme. Request schemas come from the structs that validate the bodies, so they cannot drift."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

from modelyard.security.admin_api import CreateKey, ExpireKey
from modelyard.security.guardrails.config import GuardrailConfig

REF = "#/components/schemas/{name}"

RESPONSE_SCHEMAS: dict[str, Any] = {
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


def request_schemas() -> dict[str, Any]:
    _, schemas = msgspec.json.schema_components([CreateKey, ExpireKey, GuardrailConfig], ref_template=REF)
    return schemas


def security_paths(op: Callable[..., dict[str, Any]]) -> dict[str, Any]:
    """``op`` is openapi.py's operation builder: ``op(summary, response, body, status=..., **extra)``."""
    admin = {"tags": ["security"]}
    key_id = [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}]
    limit = {"name": "limit", "in": "query", "required": False, "schema": {"type": "integer", "minimum": 1}}
    return {
        "/admin/keys": {
            "get": op("List API keys (never their secrets)", None, **admin),
            "post": op(
                "Create an API key; the secret is in this answer only", "ApiKey", "CreateKey", status="201", **admin
            ),
        },
        "/admin/keys/{id}": {"get": op("One API key", "ApiKey", parameters=key_id, **admin)},
        "/admin/keys/{id}/revoke": {
            "post": op("Revoke a key (every replica refuses it within a second)", "ApiKey", parameters=key_id, **admin)
        },
        "/admin/keys/{id}/expire": {
            "post": op("Set a key's expiry (empty body: now)", "ApiKey", "ExpireKey", parameters=key_id, **admin)
        },
        "/admin/keys/{id}/spend": {"get": op("A key's spend per period", None, parameters=key_id, **admin)},
        "/admin/spend": {"get": op("Spend of every key, today and this month", None, **admin)},
        "/admin/guardrails": {
            "get": op("Guardrail and request-limit config in force, and where it came from", None, **admin),
            "put": op(
                "Replace the guardrail config (stored, audited, applied on every replica)",
                None,
                "GuardrailConfig",
                **admin,
            ),
            "delete": op("Drop the stored config (back to the --guardrails file)", None, **admin),
        },
        "/admin/audit": {"get": op("Audit log, newest first", None, parameters=[limit], **admin)},
        "/admin/audit/verify": {"get": op("Verify the audit hash chain", "AuditVerify", **admin)},
    }


SECURITY_SCHEMES = {"apiKey": {"type": "http", "scheme": "bearer", "description": "my-… API key"}}
