"""How the answer of one endpoint leads to others: the OpenAPI links of ``/openapi.json``.

A link says that a value in a successful answer (the new key's ``id``, the uploaded file's ``id``) is what a later
call takes (``GET /admin/keys/{id}``, ``POST /v1/batches`` with ``input_file_id``). Clients read them as
documentation; schemathesis follows them for stateful testing (create, then read, change and delete what was
created). They name endpoints of the table in ``api/endpoints.py`` by method and path — each endpoint is still
declared once there — and :func:`check_links` (run by ``api/openapi.py``) refuses a link to an endpoint that does not
exist, so the two cannot drift apart.

Values are OpenAPI runtime expressions: ``$response.body#/id`` is the answer's ``id``. No link leads back into a
create (``previous_response_id`` from one response to the next would be one): schemathesis starts its sequences
only at operations no link reaches, so such a link would leave creating a response to chance.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from modelyard.api.endpoint import Endpoint, path_parameters

_ID = "$response.body#/id"


@dataclass(frozen=True)
class Link:
    name: str  # unique among the source endpoint's links
    source: str  # "METHOD /path" of the endpoint whose answer carries the value
    target: str  # "METHOD /path" of the endpoint that takes it
    parameters: dict[str, str] = field(default_factory=dict)  # path parameter → runtime expression
    body: dict[str, Any] | None = None  # the target's request body (values may be runtime expressions)


def _each(source: str, targets: dict[str, str], parameters: dict[str, str]) -> tuple[Link, ...]:
    return tuple(Link(name, source, target, parameters) for name, target in targets.items())


LINKS: tuple[Link, ...] = (
    *_each(
        "POST /admin/keys",
        {
            "GetKey": "GET /admin/keys/{id}",
            "KeySpend": "GET /admin/keys/{id}/spend",
            "ExpireKey": "POST /admin/keys/{id}/expire",
            "RevokeKey": "POST /admin/keys/{id}/revoke",
        },
        {"id": _ID},
    ),
    *_each(
        "POST /admin/keys/{id}/expire",
        {"GetExpiredKey": "GET /admin/keys/{id}", "RevokeExpiredKey": "POST /admin/keys/{id}/revoke"},
        {"id": _ID},
    ),
    *_each("POST /admin/keys/{id}/revoke", {"GetRevokedKey": "GET /admin/keys/{id}"}, {"id": _ID}),
    *_each(
        "POST /v1/files", {"GetFile": "GET /v1/files/{id}", "FileContent": "GET /v1/files/{id}/content"}, {"id": _ID}
    ),
    Link(
        "CreateBatch",
        "POST /v1/files",
        "POST /v1/batches",
        body={"input_file_id": _ID, "endpoint": "/v1/chat/completions", "completion_window": "24h"},
    ),
    *_each(
        "POST /v1/batches",
        {"GetBatch": "GET /v1/batches/{id}", "CancelBatch": "POST /v1/batches/{id}/cancel"},
        {"id": _ID},
    ),
    *_each("POST /v1/batches/{id}/cancel", {"GetCancelledBatch": "GET /v1/batches/{id}"}, {"id": _ID}),
    *_each(
        "POST /v1/responses",
        {"GetResponse": "GET /v1/responses/{id}", "DeleteResponse": "DELETE /v1/responses/{id}"},
        {"id": _ID},
    ),
    *_each("DELETE /v1/responses/{id}", {"GetDeletedResponse": "GET /v1/responses/{id}"}, {"id": _ID}),
    *_each(
        "POST /admin/models",
        {
            "GetVersion": "GET /admin/models/{name}/versions/{version}",
            "ArchiveVersion": "POST /admin/models/{name}/versions/{version}/archive",
        },
        {"name": "$response.body#/model", "version": "$response.body#/number"},
    ),
    *_each(
        "POST /admin/models",
        {"GetModel": "GET /admin/models/{name}", "ModelEvents": "GET /admin/models/{name}/events"},
        {"name": "$response.body#/model"},
    ),
    *_each(
        "POST /admin/rollouts",
        {
            "GetRollout": "GET /admin/rollouts/{rollout}",
            "RolloutDecisions": "GET /admin/rollouts/{rollout}/decisions",
            "AbortRollout": "POST /admin/rollouts/{rollout}/abort",
        },
        {"rollout": _ID},
    ),
    *_each(
        "POST /admin/experiments",
        {
            "GetExperiment": "GET /admin/experiments/{experiment}",
            "StopExperiment": "POST /admin/experiments/{experiment}/stop",
        },
        {"experiment": "$response.body#/name"},
    ),
)


def check_links(links: Iterable[Link], endpoints: Iterable[Endpoint]) -> None:
    """Every link joins two endpoints of the table and fills only path parameters its target has."""
    known = {f"{endpoint.method} {endpoint.path}": endpoint for endpoint in endpoints}
    names: set[tuple[str, str]] = set()
    for link in links:
        for end in (link.source, link.target):
            if end not in known:
                raise ValueError(f"link {link.name}: no endpoint {end!r} in api/endpoints.py")
        unknown = set(link.parameters) - set(path_parameters(known[link.target].path))
        if unknown:
            raise ValueError(f"link {link.name}: {link.target} has no path parameter {sorted(unknown)}")
        if (link.source, link.name) in names:
            raise ValueError(f"link {link.name}: declared twice on {link.source}")
        names.add((link.source, link.name))


def operation_ref(target: str) -> str:
    """``GET /admin/keys/{id}`` → ``#/paths/~1admin~1keys~1{id}/get`` (a JSON pointer into the document)."""
    method, path = target.split(" ", 1)
    return "#/paths/" + path.replace("~", "~0").replace("/", "~1") + "/" + method.lower()


def link_objects(links: Iterable[Link], source: str) -> dict[str, Any]:
    """The ``links`` of ``source``'s success response, as OpenAPI writes them."""
    objects: dict[str, Any] = {}
    for link in links:
        if link.source != source:
            continue
        entry: dict[str, Any] = {"operationRef": operation_ref(link.target)}
        if link.parameters:
            entry["parameters"] = dict(link.parameters)
        if link.body is not None:
            entry["requestBody"] = dict(link.body)
        objects[link.name] = entry
    return objects
