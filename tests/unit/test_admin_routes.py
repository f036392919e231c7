"""The admin APIs' dispatch: most specific pattern first, OpenAI-shaped 404 and 405 (with Allow), HEAD as GET."""

from __future__ import annotations

from typing import Any

import pytest

from modelyard.api.admin_routes import AdminRoutes
from modelyard.errors import APIError


async def _version(scope: Any, receive: Any, params: dict[str, str]) -> tuple[int, Any]:
    return 200, params


async def _model(scope: Any, receive: Any, params: dict[str, str]) -> tuple[int, Any]:
    return 200, params


ROUTES = [
    (r"^/admin/models/(?P<name>[^@:]+?)/versions/(?P<version>\d+)$", {"GET": _version}),
    (r"^/admin/models/(?P<name>[^@:]+?)$", {"GET": _model, "PATCH": _model}),
]


def test_the_first_matching_pattern_wins_and_names_its_groups() -> None:
    handler, params = AdminRoutes(ROUTES).resolve("GET", "/admin/models/org/gemma/versions/2")
    assert handler is _version and params == {"name": "org/gemma", "version": "2"}
    handler, params = AdminRoutes(ROUTES).resolve("PATCH", "/admin/models/org/gemma")
    assert handler is _model and params == {"name": "org/gemma"}


def test_unknown_paths_and_methods_are_openai_shaped_errors() -> None:
    with pytest.raises(APIError) as missing:
        AdminRoutes(ROUTES).resolve("GET", "/admin/nothing")
    assert missing.value.status == 404 and missing.value.code == "unknown_url"
    with pytest.raises(APIError) as wrong:
        AdminRoutes(ROUTES).resolve("DELETE", "/admin/models/gemma")
    assert wrong.value.status == 405 and wrong.value.headers == {"allow": "GET, PATCH"}


def test_head_is_answered_as_get_only_where_asked() -> None:
    handler, _ = AdminRoutes(ROUTES, head_as_get=True).resolve("HEAD", "/admin/models/gemma")
    assert handler is _model
    with pytest.raises(APIError) as refused:
        AdminRoutes(ROUTES).resolve("HEAD", "/admin/models/gemma")
    assert refused.value.status == 405
