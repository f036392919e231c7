"""Dispatch derived from the endpoint table: a path and method to the endpoint that serves them.

Fixed paths are one dictionary read (every inference request is one of those); templated paths are tried most
specific first — the one with more fixed characters wins, so ``/admin/models/{name}/versions/{version}`` is tried
before ``/admin/models/{name}`` even though a model name may contain ``/``. An unknown path is a 404; a known path
with another method a 405 that lists the allowed ones. ``HEAD`` is answered wherever ``GET`` is.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Generic, TypeVar

from modelyard.api.endpoint import PARAMETERS
from modelyard.errors import method_not_allowed, not_found_route

T = TypeVar("T")
_PARAM = re.compile(r"\{([a-z_]+)\}")
_NO_PARAMETERS: Mapping[str, str] = MappingProxyType({})  # shared by every fixed path: read-only


@dataclass(frozen=True)
class _Template(Generic[T]):
    regex: re.Pattern[str]
    methods: dict[str, T]


class Router(Generic[T]):
    def __init__(self, routes: Iterable[tuple[str, str, T]]) -> None:
        """``routes``: (method, path template, value) — the value is what :meth:`match` returns."""
        self._fixed: dict[str, dict[str, T]] = {}
        templated: dict[str, dict[str, T]] = {}
        for method, path, value in routes:
            table = templated if "{" in path else self._fixed
            methods = table.setdefault(path, {})
            if method in methods:
                raise ValueError(f"{method} {path} is declared twice")
            methods[method] = value
        ordered = sorted(templated, key=lambda p: len(_PARAM.sub("", p)), reverse=True)
        self._templates = [_Template(_compile(path), templated[path]) for path in ordered]

    def match(self, method: str, path: str) -> tuple[T, Mapping[str, str]]:
        """The value for this method and path, and the path's named parameters; raises the 404 or 405."""
        methods = self._fixed.get(path)
        params: Mapping[str, str] = _NO_PARAMETERS
        if methods is None:
            for template in self._templates:
                found = template.regex.match(path)
                if found is not None:
                    methods, params = template.methods, found.groupdict()
                    break
            else:
                raise not_found_route(path)
        value = methods.get("GET" if method == "HEAD" else method)
        if value is None:
            raise method_not_allowed(method, path, list(methods))
        return value, params


def _compile(path: str) -> re.Pattern[str]:
    pattern, position = "^", 0
    for found in _PARAM.finditer(path):
        pattern += re.escape(path[position : found.start()])
        name = found.group(1)
        pattern += f"(?P<{name}>{PARAMETERS[name].pattern})"
        position = found.end()
    return re.compile(pattern + re.escape(path[position:]) + "$")
