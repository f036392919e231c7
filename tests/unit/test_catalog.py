from __future__ import annotations

import orjson
import pytest

from modelyard.gateway.catalog import ModelCatalog, ServedModel


class StaticUpstream:
    def __init__(self, name: str) -> None:
        self.name = name
        self.ready = True
        self.base_url = "http://127.0.0.1:1"

    def retry_after_s(self) -> int:
        return 1

    def describe(self) -> dict[str, object]:
        return {"name": self.name}


def test_resolves_names_and_aliases() -> None:
    model = ServedModel("gemma-3-270m", StaticUpstream("a"), aliases=("gemma-3-270m-q4_k_m",))
    catalog = ModelCatalog([model])
    assert catalog.resolve("gemma-3-270m") is model
    assert catalog.resolve("gemma-3-270m-q4_k_m") is model
    assert catalog.resolve("other") is None
    assert orjson.loads(catalog.list_body)["data"][0]["id"] == "gemma-3-270m"


def test_conflicting_names_are_rejected() -> None:
    with pytest.raises(ValueError, match="used by both"):
        ModelCatalog([ServedModel("a", StaticUpstream("a")), ServedModel("b", StaticUpstream("b"), aliases=("a",))])
