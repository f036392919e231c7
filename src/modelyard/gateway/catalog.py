"""The gateway's in-memory view of what it serves.

A catalog is an immutable snapshot: the control plane builds a new one and swaps it in, so a request that
already resolved its model keeps a consistent view and lookups need no lock.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

import orjson


class Upstream(Protocol):
    """Anything that serves the OpenAI HTTP API: a supervised local engine or a remote endpoint."""

    name: str
    ready: bool
    base_url: str

    def retry_after_s(self) -> int: ...

    def describe(self) -> dict[str, object]: ...


@dataclass(frozen=True)
class ServedModel:
    name: str
    upstream: Upstream
    aliases: tuple[str, ...] = ()
    created: int = 0
    owned_by: str = "modelyard"
    embeddings: bool = False
    upstream_model: str | None = None  # the name the upstream knows the model by, when it differs

    def openai_object(self) -> dict[str, object]:
        return {"id": self.name, "object": "model", "created": self.created, "owned_by": self.owned_by}


class ModelCatalog:
    def __init__(self, models: Iterable[ServedModel]) -> None:
        self.models: tuple[ServedModel, ...] = tuple(models)
        by_name: dict[str, ServedModel] = {}
        for model in self.models:
            for key in (model.name, *model.aliases):
                if key in by_name and by_name[key] is not model:
                    raise ValueError(f"Model name '{key}' is used by both '{by_name[key].name}' and '{model.name}'")
                by_name[key] = model
        self._by_name = by_name
        self.list_body = orjson.dumps({"object": "list", "data": [m.openai_object() for m in self.models]})

    def resolve(self, name: str) -> ServedModel | None:
        return self._by_name.get(name)

    def get_body(self, name: str) -> bytes | None:
        model = self._by_name.get(name)
        return None if model is None else orjson.dumps({**model.openai_object(), "id": name})
