"""Dispatch for the admin APIs (the registry's and the security layer's): a table of path patterns, tried in order,
each with its handler per HTTP method. An unknown path is a 404, a known path with another method a 405 that
lists the allowed ones."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from modelyard.api.asgi import Receive, Scope
from modelyard.errors import method_not_allowed, not_found_route

Handler = Callable[[Scope, Receive, dict[str, str]], Awaitable[tuple[int, Any]]]


class AdminRoutes:
    def __init__(self, routes: Sequence[tuple[str, dict[str, Handler]]], head_as_get: bool = False) -> None:
        """``routes``: (regular expression, {method: handler}), most specific first."""
        self._routes = [(re.compile(pattern), methods) for pattern, methods in routes]
        self._head_as_get = head_as_get

    def resolve(self, method: str, path: str) -> tuple[Handler, dict[str, str]]:
        """The handler and the path's named groups; raises the OpenAI-shaped 404 or 405."""
        for pattern, methods in self._routes:
            match = pattern.match(path)
            if match is None:
                continue
            handler = methods.get("GET" if self._head_as_get and method == "HEAD" else method)
            if handler is None:
                error = method_not_allowed(method, path)
                error.headers["allow"] = ", ".join(methods)
                raise error
            return handler, match.groupdict()
        raise not_found_route(path)
