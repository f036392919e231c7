"""Stage 2, resolve: the client's ``model`` name to a route of the current catalog, or a 404 that lists what is
served (and says why a known name is not, e.g. an archived version)."""

from __future__ import annotations

from modelyard.errors import model_not_found
from modelyard.gateway.exchange import Exchange
from modelyard.routing.catalog import ModelCatalog
from modelyard.routing.model import Route


def resolve(exchange: Exchange, model: str, catalog: ModelCatalog) -> Route:
    route = catalog.resolve(model)
    if route is None:
        raise model_not_found(model, catalog.ids, catalog.explain(model))
    exchange.resolved(model)
    return route
