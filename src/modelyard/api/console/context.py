"""What a console page works with: the admin API as the session's key, who is looking, and what it answers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from modelyard.api.console.html import Viewer
from modelyard.api.replies import Reply
from modelyard.errors import APIError
from modelyard.security.keys import KeyGrant

AdminCall = Callable[[str, str, KeyGrant | None, Mapping[str, str] | None, bytes | None], Awaitable[Reply]]
"""(method, path, caller, query, JSON body) → the admin endpoint's reply; raises its APIError."""


@dataclass
class Context:
    """One console request's view of the admin API: its caller and who is looking."""

    viewer: Viewer
    grant: KeyGrant | None
    call: AdminCall

    async def get(self, path: str, query: Mapping[str, str] | None = None) -> Any:
        return (await self.call("GET", path, self.grant, query, None))[1]

    async def send(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        return (await self.call(method, path, self.grant, None, orjson.dumps(body or {})))[1]

    async def attempt(self, path: str, query: Mapping[str, str] | None = None) -> tuple[Any, str | None]:
        """A read whose failure is shown in its place on the page: (value, None) or (None, the message)."""
        try:
            return await self.get(path, query), None
        except APIError as error:
            return None, error.message


@dataclass(frozen=True)
class Page:
    title: str
    slug: str
    body: str
    status: int = 200
    errors: tuple[str, ...] = ()
    head: str = ""
