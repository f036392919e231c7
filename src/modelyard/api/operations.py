"""The endpoints operators and probes use: liveness, readiness, metrics, the OpenAPI document."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import orjson

from modelyard.asgi import Request, send_bytes


class Serving(Protocol):
    """What the operations endpoints read from the running process."""

    @property
    def ready(self) -> bool: ...

    def describe(self) -> dict[str, object]: ...

    async def metrics_text(self, local: bool = False) -> tuple[bytes, str]: ...


class Operations:
    def __init__(self, serving: Serving, openapi: Callable[[], bytes], draining: Callable[[], bool]) -> None:
        self._serving = serving
        self._openapi = openapi
        self._draining = draining

    async def health(self, request: Request) -> None:
        """Liveness: the gateway process answers. Engine trouble is a readiness matter, not a reason to restart us."""
        await send_bytes(request.send, 200, b'{"status":"ok"}')

    async def ready(self, request: Request) -> None:
        draining = self._draining()
        ready = self._serving.ready and not draining
        body = {"ready": ready, "draining": draining, **self._serving.describe()}
        headers = [] if ready else [(b"retry-after", b"2")]
        await send_bytes(request.send, 200 if ready else 503, orjson.dumps(body), headers)

    async def metrics(self, request: Request) -> None:
        # Over a worker's private socket (``serve --workers``: a sibling merging the workers' metrics) a process
        # answers its own metrics; over the port, everyone's merged.
        server = request.scope.get("server")
        text, content_type = await self._serving.metrics_text(local=server is not None and server[1] is None)
        await send_bytes(request.send, 200, text, content_type=content_type.encode())

    async def openapi(self, request: Request) -> None:
        await send_bytes(request.send, 200, self._openapi())
