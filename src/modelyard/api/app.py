"""The ASGI application: a flat routing table over the runtime's handlers, plus the ASGI lifespan.

Routing is a dictionary lookup on the exact path; the only parameterised route is ``/v1/models/{id}``.
"""

from __future__ import annotations

import logging

import orjson

from modelyard.api.admin import PREFIX as ADMIN_PREFIX
from modelyard.api.asgi import Receive, Scope, Send, send_bytes, send_error
from modelyard.api.openapi import openapi_document
from modelyard.errors import method_not_allowed, not_found_route
from modelyard.runtime import Runtime
from modelyard.security.admin_api import SecurityAdmin

log = logging.getLogger("modelyard")

_MODELS_PREFIX = "/v1/models/"


class ModelyardApp:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._draining = False
        handlers = runtime.handlers
        self._routes = {
            "/v1/chat/completions": ("POST", handlers.chat),
            "/v1/completions": ("POST", handlers.completions),
            "/v1/embeddings": ("POST", handlers.embeddings),
            "/v1/models": ("GET", handlers.list_models),
            "/health": ("GET", self._health),
            "/ready": ("GET", self._ready),
            "/metrics": ("GET", self._metrics),
            "/openapi.json": ("GET", self._openapi),
        }
        self._openapi_body = orjson.dumps(openapi_document())
        # Security (docs/security.md): authentication and scope checks run before any route; None in benchmarks.
        self._security = getattr(runtime, "security", None)
        self._security_admin = SecurityAdmin(self._security) if self._security is not None else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"]
        if self._security is not None:
            denied = self._security.gate(scope)
            if denied is not None:
                await send_error(send, denied)
                return
        route = self._routes.get(path)
        if route is not None:
            method, handler = route
            if scope["method"] == method or (method == "GET" and scope["method"] == "HEAD"):
                await handler(scope, receive, send)
            else:
                await send_error(send, method_not_allowed(scope["method"], path), [(b"allow", method.encode())])
            return
        if path.startswith(_MODELS_PREFIX) and scope["method"] == "GET":
            await self.runtime.handlers.get_model(scope, receive, send, path[len(_MODELS_PREFIX) :])
            return
        if self._security_admin is not None and SecurityAdmin.handles(path):
            await self._security_admin(scope, receive, send)
            return
        if path.startswith(ADMIN_PREFIX) and self.runtime.admin is not None:
            await self.runtime.admin(scope, receive, send)
            return
        await send_error(send, not_found_route(path))

    async def _health(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Liveness: the gateway process answers. Engine trouble is a readiness matter, not a reason to restart us."""
        await send_bytes(send, 200, b'{"status":"ok"}')

    async def _ready(self, scope: Scope, receive: Receive, send: Send) -> None:
        ready = self.runtime.ready and not self._draining
        body = {"ready": ready, "draining": self._draining, **self.runtime.describe()}
        headers = [] if ready else [(b"retry-after", b"2")]
        await send_bytes(send, 200 if ready else 503, orjson.dumps(body), headers)

    async def _openapi(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send_bytes(send, 200, self._openapi_body)

    async def _metrics(self, scope: Scope, receive: Receive, send: Send) -> None:
        metrics = self.runtime.metrics
        engines = await self.runtime.engine_metrics()
        await send_bytes(send, 200, metrics.render() + engines, content_type=metrics.content_type.encode())

    def begin_drain(self) -> None:
        """Called on SIGTERM: report not-ready so load balancers stop sending while in-flight work finishes."""
        self._draining = True

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.runtime.start()
                except Exception as exc:
                    log.exception("start-up failed")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self._draining = True
                await self.runtime.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return
