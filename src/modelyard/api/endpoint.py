"""What an endpoint is — its declaration, the path parameters it may name, and the scope a key needs — apart from
the table of every endpoint (``api/endpoints.py``), so that the router, the door and the OpenAPI generator read
one vocabulary."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec

from modelyard.security.keys import READ

METRICS = "metrics"  # public, unless --metrics-auth asks for the read scope
CONSOLE = "console"  # the console's session cookie, checked by the console (the door asks for no key)


@dataclass(frozen=True)
class Parameter:
    pattern: str  # regular expression for the path segment(s)
    schema: dict[str, Any]


PARAMETERS: dict[str, Parameter] = {
    "name": Parameter(r"[^@:]+?", {"type": "string"}),  # model names may contain "/"
    "version": Parameter(r"\d+", {"type": "integer", "minimum": 1}),
    "model": Parameter(r".+", {"type": "string"}),  # served ids: name, name@alias, name:version
    "alias": Parameter(r"[^/]+", {"type": "string"}),
    "id": Parameter(r"[^/]+", {"type": "string"}),
    "action": Parameter(
        r"resume|promote|rollback|abort", {"type": "string", "enum": ["resume", "promote", "rollback", "abort"]}
    ),
    "rollout": Parameter(r"\d+", {"type": "integer", "minimum": 1}),
    "experiment": Parameter(r"[A-Za-z0-9][A-Za-z0-9._-]*", {"type": "string"}),
}


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    scope: str | None  # inference | read | admin | metrics | None (public)
    handler: Callable[..., Any]  # a method of one of the services, taken from its class
    summary: str
    tag: str
    body: type[msgspec.Struct] | None = None  # the struct that validates the request body
    body_content: dict[str, Any] | None = None  # a request body described by hand (e.g. YAML or JSON)
    response: str | None = None  # a schema of api/openapi.py's responses
    status: int = 200
    query: tuple[str, ...] = ()
    query_schemas: dict[str, Any] | None = None  # per query parameter, where it is not a plain string
    streams: bool = False  # may answer with SSE

    @property
    def service(self) -> str:
        """The class whose method handles this endpoint (e.g. ``RegistryAdmin``)."""
        return self.handler.__qualname__.split(".")[0]


def needed_scope(endpoint: Endpoint, metrics_public: bool) -> str | None:
    """The scope a key needs for ``endpoint`` (None: public)."""
    if endpoint.scope == METRICS:
        return None if metrics_public else READ
    if endpoint.scope == CONSOLE:
        return None
    return endpoint.scope


def path_parameters(path: str) -> list[str]:
    """``/admin/models/{name}/versions/{version}`` → ``["name", "version"]``."""
    names = []
    for segment in path.split("{")[1:]:
        names.append(segment.split("}", 1)[0])
    return names
