"""The gateway's in-memory view of what it serves.

A catalog is an immutable snapshot mapping every model id a client may send to a route: the registry's own ids
(``name``, ``name@alias``, ``name:version``, one target each) and the routes of the deployments file. The control
plane builds a new one and swaps it in, so a request that already resolved its route keeps a consistent view, and
a lookup is one dictionary read with no lock.
"""

from __future__ import annotations

from collections.abc import Mapping

import orjson

from modelyard.routing.model import Replica, Route, Upstream


class ModelCatalog:
    def __init__(self, routes: Mapping[str, Route], unrouted: Mapping[str, str] | None = None) -> None:
        self._routes = dict(routes)
        self._unrouted = dict(unrouted or {})
        self.ids = tuple(sorted(self._routes))
        self.list_body = orjson.dumps({"object": "list", "data": [self._openai_object(i) for i in self.ids]})

    def with_routes(self, extra: Mapping[str, Route]) -> ModelCatalog:
        """This catalog plus ``extra`` routes (which win on a name both have)."""
        return ModelCatalog({**self._routes, **extra}, self._unrouted)

    def resolve(self, model_id: str) -> Route | None:
        return self._routes.get(model_id)

    def explain(self, model_id: str) -> str | None:
        """Why a known id is not served (archived, not deployed, no production alias), for a helpful 404."""
        return self._unrouted.get(model_id)

    def routes(self) -> dict[str, object]:
        return {model_id: route.describe() for model_id, route in self._routes.items()}

    def replicas(self) -> list[Replica]:
        unique: dict[int, Replica] = {}
        for route in self._routes.values():
            for target in route.targets:
                for replica in target.replicas:
                    unique[id(replica)] = replica
        return list(unique.values())

    def upstreams(self) -> list[Upstream]:
        unique = {id(r.upstream): r.upstream for r in self.replicas()}
        return list(unique.values())

    def get_body(self, model_id: str) -> bytes | None:
        return orjson.dumps(self._openai_object(model_id)) if model_id in self._routes else None

    def _openai_object(self, model_id: str) -> dict[str, object]:
        served = self._routes[model_id].primary.served
        return {"id": model_id, "object": "model", "created": served.created, "owned_by": served.owned_by}
