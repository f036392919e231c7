"""The inference endpoints as the endpoint table names them: chat, completions and embeddings go through the
pipeline; the model list is read straight from the catalog snapshot."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from modelyard.asgi import Request, send_bytes
from modelyard.errors import model_not_found
from modelyard.gateway.parse import CHAT, COMPLETIONS, EMBEDDINGS
from modelyard.gateway.pipeline import Pipeline
from modelyard.routing.catalog import ModelCatalog


class InferenceAPI:
    def __init__(self, pipeline: Pipeline, catalog: Callable[[], ModelCatalog]) -> None:
        self._pipeline = pipeline
        self._catalog = catalog

    # The pipeline's own coroutine is returned (not awaited in a coroutine of our own): one frame less per request.
    def chat(self, request: Request) -> Awaitable[None]:
        return self._pipeline(request, CHAT)

    def completions(self, request: Request) -> Awaitable[None]:
        return self._pipeline(request, COMPLETIONS)

    def embeddings(self, request: Request) -> Awaitable[None]:
        return self._pipeline(request, EMBEDDINGS)

    async def list_models(self, request: Request) -> None:
        await send_bytes(request.send, 200, self._catalog().list_body)

    async def get_model(self, request: Request) -> None:
        catalog = self._catalog()
        name = request.params["model"]
        body = catalog.get_body(name)
        if body is None:
            raise model_not_found(name, catalog.ids, catalog.explain(name))
        await send_bytes(request.send, 200, body)
