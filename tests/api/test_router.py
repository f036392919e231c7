"""Dispatch derived from the endpoint table: most specific template first, OpenAI-shaped 404 and 405 (with Allow),
HEAD wherever GET is."""

from __future__ import annotations

import pytest

from modelyard.api.endpoints import ENDPOINTS
from modelyard.api.router import Router
from modelyard.errors import APIError

ROUTES = [
    ("GET", "/admin/models/{name}", "model"),
    ("PATCH", "/admin/models/{name}", "update"),
    ("GET", "/admin/models/{name}/versions/{version}", "version"),
    ("GET", "/v1/models", "list"),
]


def test_the_most_specific_template_wins_and_names_its_parameters() -> None:
    router = Router(ROUTES)
    assert router.match("GET", "/admin/models/org/gemma/versions/2") == (
        "version",
        {"name": "org/gemma", "version": "2"},
    )
    assert router.match("PATCH", "/admin/models/org/gemma") == ("update", {"name": "org/gemma"})
    assert router.match("GET", "/v1/models") == ("list", {})


def test_unknown_paths_and_methods_are_openai_shaped_errors() -> None:
    with pytest.raises(APIError) as missing:
        Router(ROUTES).match("GET", "/admin/nothing")
    assert missing.value.status == 404 and missing.value.code == "unknown_url"
    with pytest.raises(APIError) as wrong:
        Router(ROUTES).match("DELETE", "/admin/models/gemma")
    assert wrong.value.status == 405 and wrong.value.headers == {"allow": "GET, PATCH"}
    with pytest.raises(APIError) as alias_not_a_version:
        Router(ROUTES).match("GET", "/admin/models/gemma@prod")  # a model name has no '@'
    assert alias_not_a_version.value.status == 404


def test_head_is_answered_as_get() -> None:
    assert Router(ROUTES).match("HEAD", "/admin/models/gemma") == ("model", {"name": "gemma"})
    with pytest.raises(APIError) as refused:
        Router([("POST", "/v1/chat/completions", "chat")]).match("HEAD", "/v1/chat/completions")
    assert refused.value.status == 405 and refused.value.headers == {"allow": "POST"}


def test_an_endpoint_declared_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="declared twice"):
        Router([("GET", "/x", 1), ("GET", "/x", 2)])


def test_every_endpoint_of_the_table_is_reachable_by_its_own_path() -> None:
    router = Router((e.method, e.path, e) for e in ENDPOINTS)
    examples = {
        "name": "org/gemma",
        "version": "3",
        "model": "gemma@canary",
        "alias": "staging",
        "id": "key_1",
        "rollout": "7",
        "action": "resume",
    }
    for endpoint in ENDPOINTS:
        path = endpoint.path
        for name, value in examples.items():
            path = path.replace("{" + name + "}", value)
        found, _ = router.match(endpoint.method, path)
        assert found is endpoint, f"{endpoint.method} {path} reached {found.method} {found.path}"
