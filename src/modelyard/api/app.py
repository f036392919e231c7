"""The ASGI application: every request goes through the same three steps, all derived from the endpoint table.

1. dispatch: method and path to the endpoint (``api/router.py``): a 404 or 405 otherwise;
2. the door: the caller's key is checked against the scope the endpoint declares (``SecurityLayer.authenticate``);
3. the endpoint's handler, with the caller on the request.

A failure raised anywhere below (a concept's own error, a bad body, a refusal) is turned into an OpenAI-shaped
answer in one place, :meth:`ModelyardApp._fail`, through ``api/problems.py``. The inference pipeline answers its
own failures (it must record them), with the same vocabulary and the same sender.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import orjson

from modelyard.api.endpoints import ENDPOINTS, SERVICES, Endpoint, needed_scope
from modelyard.api.openapi import openapi_document
from modelyard.api.operations import Operations, Serving
from modelyard.api.problems import to_api_error
from modelyard.api.replies import send_reply
from modelyard.api.router import Router
from modelyard.asgi import Receive, Request, Scope, Send, client_request_id, send_error
from modelyard.errors import internal_error, not_available_here
from modelyard.security.layer import SecurityLayer

log = logging.getLogger("modelyard")

Bound = Callable[[Request], Awaitable[Any]]


class Runtime(Serving, Protocol):
    """What the app needs from the process it runs in (``roles/runtime.py``)."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class ModelyardApp:
    def __init__(self, runtime: Runtime, services: list[object], security: SecurityLayer | None) -> None:
        """``services``: the instances whose methods handle endpoints (the inference API, and the admin APIs this
        process runs); endpoints of a service that is absent answer that it is not available here."""
        self.runtime = runtime
        self._draining = False
        self._security = security
        metrics_public = security is None or security.settings.metrics_public
        self._openapi_body = orjson.dumps(openapi_document(metrics_public))
        present = {type(s).__name__: s for s in services}
        present[Operations.__name__] = Operations(runtime, lambda: self._openapi_body, lambda: self._draining)
        unknown = set(present) - {s.__name__ for s in SERVICES}
        if unknown:
            raise TypeError(f"no endpoints are declared for {sorted(unknown)}")
        self._router: Router[tuple[Endpoint, Bound]] = Router(
            (e.method, e.path, (e, self._bind(e, present, metrics_public))) for e in ENDPOINTS
        )

    @staticmethod
    def _bind(endpoint: Endpoint, present: dict[str, object], metrics_public: bool) -> Bound:
        service = present.get(endpoint.service)
        if service is None:
            what = f"{endpoint.method} {endpoint.path}"

            async def absent(request: Request) -> None:
                raise not_available_here(what)

            return absent
        bound: Bound = getattr(service, endpoint.handler.__name__)
        return bound

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive, send)
        try:
            (endpoint, handler), request.params = self._router.match(scope["method"], scope["path"])
            if self._security is not None:
                needed = needed_scope(endpoint, self._security.settings.metrics_public)
                request.caller = self._security.authenticate(scope["headers"], needed)
            reply = await handler(request)
            if reply is not None:
                await send_reply(send, reply)
        except Exception as failure:  # the one place a failure becomes an answer
            await self._fail(request, failure)

    @staticmethod
    async def _fail(request: Request, failure: Exception) -> None:
        error = to_api_error(failure)
        if error is None:
            given = client_request_id(request.header(b"x-request-id"))
            request_id = (given or os.urandom(6).hex().encode()).decode()
            log.exception(
                "unhandled error in %s %s (request %s)", request.scope["method"], request.scope["path"], request_id
            )
            error = internal_error(request_id)
        with contextlib.suppress(Exception):  # the client may be gone, or the answer already started
            await send_error(request.send, error)

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
