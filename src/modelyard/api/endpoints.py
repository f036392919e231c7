"""Every endpoint the gateway serves, declared once: its method and path, the scope a key needs, the handler, and
what ``/openapi.json`` says about it.

Dispatch (``api/router.py``), the scope check at the door (``api/app.py``) and the OpenAPI document
(``api/openapi.py``) are all derived from :data:`ENDPOINTS`, so an endpoint cannot exist without a scope or a spec
entry. A handler is a method of one of the services the app is assembled from (the inference API, the operations
endpoints, the registry and security admin APIs); it either sends its own answer (inference, streams) and returns
None, or returns ``(status, value)`` for the app to send as JSON (or NDJSON / Markdown, see ``api/replies.py``).

Path parameters are ``{name}``; each has a pattern (a model name may contain ``/``, a version is a number) and an
OpenAPI schema in :data:`PARAMETERS`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from modelyard.api.admin_schemas import (
    CreateKey,
    ExpireKey,
    MoveAlias,
    Promote,
    RegisterVersion,
    Rollback,
    UpdateModel,
)
from modelyard.api.console.service import Console
from modelyard.api.endpoint import CONSOLE, METRICS, Endpoint
from modelyard.api.experiments_admin import ExperimentsAdmin
from modelyard.api.feedback_api import FeedbackAPI
from modelyard.api.operations import Operations
from modelyard.api.registry_admin import RegistryAdmin
from modelyard.api.request_bodies import (
    BATCH_BODY,
    DEPLOYMENTS_BODY,
    FEEDBACK_BODY,
    FILE_BODY,
    RESPONSES_BODY,
    ROLLOUT_BODY,
)
from modelyard.api.rollouts_admin import RolloutsAdmin
from modelyard.api.security_admin import SecurityAdmin
from modelyard.gateway.batches_api import BatchesAPI
from modelyard.gateway.inference import InferenceAPI
from modelyard.gateway.responses import ResponsesAPI
from modelyard.gateway.schemas import ChatCompletionRequest, CompletionRequest, EmbeddingRequest
from modelyard.security.guardrails.config import GuardrailConfig
from modelyard.security.keys import ADMIN, INFERENCE, READ

REQUEST_FILTERS = ("route", "model", "version", "key", "status", "since", "until", "limit", "shadow", "bodies")


def _inference(method: str, path: str, handler: Callable[..., Any], summary: str, **extra: Any) -> Endpoint:
    return Endpoint(method, path, INFERENCE, handler, summary, "inference", **extra)


def _ops(method: str, path: str, scope: str | None, handler: Callable[..., Any], summary: str) -> Endpoint:
    return Endpoint(method, path, scope, handler, summary, "operations")


def _admin(method: str, path: str, handler: Callable[..., Any], summary: str, **extra: Any) -> Endpoint:
    return Endpoint(method, path, READ if method == "GET" else ADMIN, handler, summary, "admin", **extra)


def _security(method: str, path: str, handler: Callable[..., Any], summary: str, **extra: Any) -> Endpoint:
    return Endpoint(method, path, READ if method == "GET" else ADMIN, handler, summary, "security", **extra)


def _console(method: str, path: str, handler: Callable[..., Any], summary: str, **extra: Any) -> Endpoint:
    public = extra.pop("public", False)
    if method == "POST":
        extra.setdefault("body_content", _FORM_BODY)
    return Endpoint(method, path, None if public else CONSOLE, handler, summary, "console", **extra)


_FORM_BODY = {"application/x-www-form-urlencoded": {"schema": {"type": "object"}}}
_REQUEST_FILTER_QUERY = ("route", "version", "key", "status", "since", "until", "limit")

_API_ENDPOINTS: tuple[Endpoint, ...] = (
    # -- inference (OpenAI-compatible) ----------------------------------------------------------------------------
    _inference(
        "POST",
        "/v1/chat/completions",
        InferenceAPI.chat,
        "Chat completion (SSE when stream=true)",
        body=ChatCompletionRequest,
        streams=True,
    ),
    _inference(
        "POST",
        "/v1/completions",
        InferenceAPI.completions,
        "Text completion (SSE when stream=true)",
        body=CompletionRequest,
        streams=True,
    ),
    _inference("POST", "/v1/embeddings", InferenceAPI.embeddings, "Embeddings", body=EmbeddingRequest),
    _inference(
        "GET", "/v1/models", InferenceAPI.list_models, "Model ids this gateway serves (name, name@alias, name:version)"
    ),
    _inference("GET", "/v1/models/{model}", InferenceAPI.get_model, "One served model id"),
    _inference(
        "POST",
        "/v1/responses",
        ResponsesAPI.create,
        "Responses API: a response (typed SSE events when stream=true), stored per key unless store=false",
        body_content=RESPONSES_BODY,
        response="Response",
        streams=True,
    ),
    _inference("GET", "/v1/responses/{id}", ResponsesAPI.get, "A stored response", response="Response"),
    _inference(
        "DELETE", "/v1/responses/{id}", ResponsesAPI.delete, "Delete a stored response", response="DeletedResponse"
    ),
    _inference(
        "POST",
        "/v1/files",
        BatchesAPI.create_file,
        "Upload a batch input file (multipart: file, purpose=batch; JSONL validated line by line)",
        body_content=FILE_BODY,
        response="File",
    ),
    _inference("GET", "/v1/files/{id}", BatchesAPI.get_file, "A file's metadata", response="File"),
    _inference("GET", "/v1/files/{id}/content", BatchesAPI.file_content, "A file's content (JSONL)"),
    _inference(
        "POST",
        "/v1/batches",
        BatchesAPI.create_batch,
        "Create a batch over an uploaded file (run in the background on spare capacity)",
        body_content=BATCH_BODY,
        response="Batch",
    ),
    _inference("GET", "/v1/batches/{id}", BatchesAPI.get_batch, "A batch and its request counts", response="Batch"),
    _inference("POST", "/v1/batches/{id}/cancel", BatchesAPI.cancel_batch, "Cancel a batch", response="Batch"),
    _inference(
        "POST",
        "/v1/feedback",
        FeedbackAPI.submit,
        "Rate an answer by its x-request-id (a second rating replaces the first; only the key that made the "
        "request, or an admin key, may rate it)",
        body_content=FEEDBACK_BODY,
        response="Feedback",
    ),
    # -- operations -----------------------------------------------------------------------------------------------
    _ops("GET", "/health", None, Operations.health, "Liveness"),
    _ops("GET", "/ready", None, Operations.ready, "Readiness (503 until every served engine is ready)"),
    _ops("GET", "/metrics", METRICS, Operations.metrics, "Prometheus metrics"),
    _ops("GET", "/openapi.json", None, Operations.openapi, "This document"),
    # -- the registry ---------------------------------------------------------------------------------------------
    _admin("GET", "/admin/models", RegistryAdmin.list_models, "List registered models"),
    _admin(
        "POST",
        "/admin/models",
        RegistryAdmin.register,
        "Register a GGUF on the gateway host as a new version",
        body=RegisterVersion,
        response="ModelVersion",
        status=201,
    ),
    _admin(
        "GET",
        "/admin/models/{name}",
        RegistryAdmin.get_model,
        "A model with its versions and aliases",
        response="RegisteredModel",
    ),
    _admin(
        "PATCH",
        "/admin/models/{name}",
        RegistryAdmin.update_model,
        "Change description, owner or tags (e.g. prices)",
        body=UpdateModel,
        response="RegisteredModel",
    ),
    _admin(
        "GET",
        "/admin/models/{name}/versions/{version}",
        RegistryAdmin.get_version,
        "One version",
        response="ModelVersion",
    ),
    _admin(
        "POST",
        "/admin/models/{name}/versions/{version}/archive",
        RegistryAdmin.archive,
        "Archive a version (refused while an alias points at it)",
        response="ModelVersion",
    ),
    _admin(
        "PUT",
        "/admin/models/{name}/aliases/{alias}",
        RegistryAdmin.move_alias,
        "Point an alias at a version",
        body=MoveAlias,
        response="AliasMove",
    ),
    _admin(
        "DELETE",
        "/admin/models/{name}/aliases/{alias}",
        RegistryAdmin.remove_alias,
        "Remove an alias",
        response="RegistryEvent",
    ),
    _admin(
        "POST",
        "/admin/models/{name}/promote",
        RegistryAdmin.promote,
        "Move 'production' (or another alias) to a version",
        body=Promote,
        response="AliasMove",
    ),
    _admin(
        "POST",
        "/admin/models/{name}/rollback",
        RegistryAdmin.rollback,
        "Move an alias back to its previous version",
        body=Rollback,
        response="AliasMove",
    ),
    _admin(
        "GET", "/admin/models/{name}/events", RegistryAdmin.events, "Append-only history of a model", query=("limit",)
    ),
    _admin("GET", "/admin/models/{name}/gates", RegistryAdmin.get_gates, "Promotion gates of a model"),
    _admin(
        "PUT",
        "/admin/models/{name}/gates",
        RegistryAdmin.set_gates,
        "Replace promotion gates (JSON form of the gates YAML)",
        body_content={"application/json": {"schema": {"type": "object"}}},
    ),
    _admin("DELETE", "/admin/models/{name}/gates", RegistryAdmin.clear_gates, "Remove promotion gates"),
    _admin(
        "GET",
        "/admin/models/{name}/card",
        RegistryAdmin.card,
        "Model card (JSON, or Markdown with format=md)",
        query=("format", "version", "alias"),
    ),
    _admin(
        "GET",
        "/admin/serving",
        RegistryAdmin.serving,
        "What this gateway serves now: routes, engines, registry revision",
    ),
    _admin(
        "GET",
        "/admin/requests",
        RegistryAdmin.list_requests,
        "Stored request log, newest first (filters: route, model, version, key, status, since, until, limit, shadow, "
        "bodies)",
        query=REQUEST_FILTERS,
    ),
    _admin(
        "GET",
        "/admin/requests/export",
        RegistryAdmin.export_requests,
        "The request log as JSON lines (same filters; everything unless limit is given)",
        query=REQUEST_FILTERS,
    ),
    _admin(
        "GET",
        "/admin/requests/{id}",
        RegistryAdmin.get_request,
        "One stored request with its bodies (as stored, redacted) and its shadow copies",
    ),
    _admin(
        "GET",
        "/admin/shadow",
        RegistryAdmin.shadow_pairs,
        "Shadow copies side by side with their primaries (same filters as /admin/requests)",
        query=("route", "since", "until", "limit", "bodies"),
    ),
    _admin(
        "GET",
        "/admin/deployments",
        RegistryAdmin.get_deployments,
        "The deployments file, when it was applied, the last refusal and what each route serves",
    ),
    _admin(
        "PUT",
        "/admin/deployments",
        RegistryAdmin.put_deployments,
        "Replace the whole deployments file: validated, applied atomically, then saved",
        body_content=DEPLOYMENTS_BODY,
    ),
    # -- rollouts -------------------------------------------------------------------------------------------------
    _admin(
        "GET",
        "/admin/rollouts",
        RolloutsAdmin.list_rollouts,
        "Rollouts, newest first (active=true: running or paused only; route; limit)",
        query=("active", "route", "limit"),
    ),
    _admin(
        "POST",
        "/admin/rollouts",
        RolloutsAdmin.start,
        "Start a rollout of a candidate version on a route (steps, guardrails, statistics in 'plan')",
        body_content=ROLLOUT_BODY,
        response="Rollout",
        status=201,
    ),
    _admin(
        "GET", "/admin/rollouts/{rollout}", RolloutsAdmin.get, "A rollout and its last decision", response="Rollout"
    ),
    _admin(
        "GET",
        "/admin/rollouts/{rollout}/decisions",
        RolloutsAdmin.decisions,
        "Every decision of a rollout with the numbers behind it, oldest first",
    ),
    _admin(
        "POST",
        "/admin/rollouts/{rollout}/resume",
        RolloutsAdmin.resume,
        "Resume a paused rollout at its step",
        response="Rollout",
    ),
    _admin(
        "POST",
        "/admin/rollouts/{rollout}/promote",
        RolloutsAdmin.promote,
        "Promote the candidate now (through the eval gates; a refusal pauses and says why)",
        response="Rollout",
    ),
    _admin(
        "POST", "/admin/rollouts/{rollout}/rollback", RolloutsAdmin.rollback, "Roll back to control", response="Rollout"
    ),
    _admin(
        "POST",
        "/admin/rollouts/{rollout}/abort",
        RolloutsAdmin.abort,
        "Stop without a verdict (no alias moves)",
        response="Rollout",
    ),
    # -- experiments ----------------------------------------------------------------------------------------------
    _admin("GET", "/admin/experiments", ExperimentsAdmin.list_experiments, "Experiments, newest first"),
    _admin(
        "POST",
        "/admin/experiments",
        ExperimentsAdmin.create,
        "Create an experiment (the JSON form of the experiment YAML: route, control, treatments, allocation, ...)",
        body_content={"application/json": {"schema": {"type": "object"}}},
        status=201,
    ),
    _admin(
        "GET",
        "/admin/experiments/{experiment}",
        ExperimentsAdmin.get,
        "An experiment with each treatment judged against the control (effect, interval, p/e-value, verdict)",
    ),
    _admin("POST", "/admin/experiments/{experiment}/stop", ExperimentsAdmin.stop, "Stop an experiment"),
    # -- keys, spend, guardrails, audit ---------------------------------------------------------------------------
    _security("GET", "/admin/keys", SecurityAdmin.list_keys, "List API keys (never their secrets)"),
    _security(
        "POST",
        "/admin/keys",
        SecurityAdmin.create_key,
        "Create an API key; the secret is in this answer only",
        body=CreateKey,
        response="ApiKey",
        status=201,
    ),
    _security("GET", "/admin/keys/{id}", SecurityAdmin.get_key, "One API key", response="ApiKey"),
    _security(
        "POST",
        "/admin/keys/{id}/revoke",
        SecurityAdmin.revoke_key,
        "Revoke a key (every replica refuses it within a second)",
        response="ApiKey",
    ),
    _security(
        "POST",
        "/admin/keys/{id}/expire",
        SecurityAdmin.expire_key,
        "Set a key's expiry (empty body: now)",
        body=ExpireKey,
        response="ApiKey",
    ),
    _security("GET", "/admin/keys/{id}/spend", SecurityAdmin.key_spend, "A key's spend per period"),
    _security(
        "GET", "/admin/spend", SecurityAdmin.spend, "Spend of every key, today and this month", query=("period",)
    ),
    _security(
        "GET",
        "/admin/guardrails",
        SecurityAdmin.get_guardrails,
        "Guardrail and request-limit config in force, and where it came from",
    ),
    _security(
        "PUT",
        "/admin/guardrails",
        SecurityAdmin.put_guardrails,
        "Replace the guardrail config (stored, audited, applied on every replica)",
        body=GuardrailConfig,
    ),
    _security(
        "DELETE",
        "/admin/guardrails",
        SecurityAdmin.delete_guardrails,
        "Drop the stored config (back to the --guardrails file)",
    ),
    _security(
        "GET",
        "/admin/audit",
        SecurityAdmin.audit,
        "Audit log, newest first",
        query=("limit", "action", "target"),
        query_schemas={"limit": {"type": "integer", "minimum": 1}},
    ),
    _security(
        "GET", "/admin/audit/verify", SecurityAdmin.verify, "Verify the audit hash chain", response="AuditVerify"
    ),
)

CONSOLE_ENDPOINTS: tuple[Endpoint, ...] = (
    _console("GET", "/console", Console.index, "The web console (to its overview, or the login page)", public=True),
    _console("GET", "/console/login", Console.login_page, "Console login page", public=True, query=("next",)),
    _console("POST", "/console/login", Console.login, "Exchange an API key for a console session cookie", public=True),
    _console("POST", "/console/logout", Console.logout, "End the console session"),
    _console("GET", "/console/assets/{id}", Console.asset, "The console's CSS and JavaScript", public=True),
    _console("GET", "/console/overview", Console.overview, "Console: live charts and engine health"),
    _console(
        "GET", "/console/overview/data", Console.overview_data, "Console: the charts' data (JSON)", query=("since",)
    ),
    _console("GET", "/console/models", Console.models, "Console: registered models"),
    _console("GET", "/console/models/{name}", Console.model, "Console: one model, its versions, cards and gates"),
    _console(
        "GET",
        "/console/models/{name}/promote",
        Console.promote_confirm,
        "Console: confirm a promotion (names from → to)",
        query=("version", "alias"),
    ),
    _console("POST", "/console/models/{name}/promote", Console.promote, "Console: promote a version"),
    _console(
        "GET",
        "/console/models/{name}/rollback",
        Console.rollback_confirm,
        "Console: confirm a rollback (names from → to)",
        query=("alias",),
    ),
    _console("POST", "/console/models/{name}/rollback", Console.rollback, "Console: roll an alias back"),
    _console("GET", "/console/routes", Console.routes, "Console: routes, replicas, engines, deployments file"),
    _console("GET", "/console/rollouts", Console.rollouts, "Console: canary rollouts"),
    _console("GET", "/console/rollouts/{rollout}", Console.rollout, "Console: a rollout's steps, arms and decisions"),
    _console(
        "GET", "/console/rollouts/{rollout}/{action}", Console.rollout_confirm, "Console: confirm a rollout action"
    ),
    _console(
        "POST",
        "/console/rollouts/{rollout}/{action}",
        Console.rollout_act,
        "Console: resume, promote, roll back, abort",
    ),
    _console(
        "GET", "/console/experiments/{experiment}", Console.experiment, "Console: an experiment's arms and verdicts"
    ),
    _console("GET", "/console/experiments/{experiment}/stop", Console.experiment_confirm, "Console: confirm a stop"),
    _console("POST", "/console/experiments/{experiment}/stop", Console.experiment_stop, "Console: stop an experiment"),
    _console("GET", "/console/requests", Console.requests, "Console: the request log", query=_REQUEST_FILTER_QUERY),
    _console(
        "GET",
        "/console/requests/export",
        Console.export_requests,
        "Console: the filtered request log as JSON lines",
        query=_REQUEST_FILTER_QUERY,
    ),
    _console("GET", "/console/requests/{id}", Console.request_detail, "Console: one request in detail"),
    _console(
        "GET", "/console/shadow", Console.shadow, "Console: shadow pairs side by side", query=_REQUEST_FILTER_QUERY
    ),
    _console("GET", "/console/keys", Console.keys, "Console: API keys and their spend"),
    _console("POST", "/console/keys", Console.create_key, "Console: create a key (its secret shown once)"),
    _console("POST", "/console/keys/{id}/revoke", Console.revoke_key, "Console: revoke a key"),
    _console(
        "GET",
        "/console/audit",
        Console.audit,
        "Console: the audit log and its verification",
        query=("action", "target", "limit"),
    ),
)

ENDPOINTS: tuple[Endpoint, ...] = _API_ENDPOINTS + CONSOLE_ENDPOINTS

SERVICES: tuple[type[Any], ...] = (
    InferenceAPI,
    ResponsesAPI,
    BatchesAPI,
    ExperimentsAdmin,
    FeedbackAPI,
    Operations,
    RegistryAdmin,
    RolloutsAdmin,
    SecurityAdmin,
    Console,
)
