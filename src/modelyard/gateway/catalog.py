"""The gateway's in-memory view of what it serves.

A catalog is an immutable snapshot mapping every model id a client may send (``name``, ``name@alias``,
``name:version``) to the engine that serves it. The control plane builds a new one and swaps it in, so a request
that already resolved its model keeps a consistent view and lookups are one dictionary read, with no lock.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import orjson


class Upstream(Protocol):
    """Anything that serves the OpenAI HTTP API: a supervised local engine or a remote endpoint.

    ``active_requests`` is maintained by the gateway (incremented while a request is being served) so that a
    retired upstream can be drained before it is stopped.
    """

    name: str
    ready: bool
    base_url: str
    active_requests: int

    def retry_after_s(self) -> int: ...

    def unavailable_reason(self) -> str: ...

    def describe(self) -> dict[str, object]: ...


@dataclass(frozen=True)
class ServedModel:
    name: str  # the registered model's name: the bounded label metrics use
    upstream: Upstream
    version: int | None = None
    created: int = 0
    owned_by: str = "modelyard"
    embeddings: bool = False
    upstream_model: str | None = None  # the name the upstream knows the model by, when it must be rewritten
    price_input_per_1k: float = 0.0  # USD, for the cost metric (from the model's registry tags)
    price_output_per_1k: float = 0.0

    @property
    def key(self) -> str:
        return self.name if self.version is None else f"{self.name}:{self.version}"


class ModelCatalog:
    def __init__(self, routes: Mapping[str, ServedModel], unrouted: Mapping[str, str] | None = None) -> None:
        self._routes = dict(routes)
        self._unrouted = dict(unrouted or {})
        self.ids = tuple(sorted(self._routes))
        self.list_body = orjson.dumps({"object": "list", "data": [self._openai_object(i) for i in self.ids]})

    def resolve(self, model_id: str) -> ServedModel | None:
        return self._routes.get(model_id)

    def explain(self, model_id: str) -> str | None:
        """Why a known id is not served (archived, not deployed, no production alias), for a helpful 404."""
        return self._unrouted.get(model_id)

    def routes(self) -> dict[str, str]:
        return {model_id: served.key for model_id, served in self._routes.items()}

    def served(self) -> list[ServedModel]:
        unique = {id(s.upstream): s for s in self._routes.values()}
        return list(unique.values())

    def get_body(self, model_id: str) -> bytes | None:
        return orjson.dumps(self._openai_object(model_id)) if model_id in self._routes else None

    def _openai_object(self, model_id: str) -> dict[str, object]:
        served = self._routes[model_id]
        return {"id": model_id, "object": "model", "created": served.created, "owned_by": served.owned_by}
