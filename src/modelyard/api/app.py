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
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol, cast
from urllib.parse import urlencode

import orjson

from modelyard.api.console.context import AdminCall
from modelyard.api.endpoint import Endpoint, needed_scope
from modelyard.api.endpoints import ENDPOINTS, SERVICES
from modelyard.api.openapi import openapi_document
from modelyard.api.operations import Operations, Serving
from modelyard.api.problems import to_api_error
from modelyard.api.replies import Reply, send_reply
from modelyard.api.router import Router
from modelyard.asgi import Message, Receive, Request, Scope, Send, client_request_id, send_error
from modelyard.errors import internal_error, missing_api_key, not_available_here
from modelyard.security.authz import authorize_scope
from modelyard.security.keys import KeyGrant
from modelyard.security.layer import SecurityLayer

log = logging.getLogger("modelyard")

Bound = Callable[[Request], Awaitable[Any]]


class Runtime(Serving, Protocol):
    """What the app needs from the process it runs in (``roles/runtime.py``)."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class ModelyardApp:
    def __init__(
        self,
        runtime: Runtime,
        services: list[object],
        security: SecurityLayer | None,
        console: Callable[[AdminCall], object] | None = None,
    ) -> None:
        """``services``: the instances whose methods handle endpoints (the inference API, and the admin APIs this
        process runs); endpoints of a service that is absent answer that it is not available here. ``console``:
        builds the web console over :meth:`call` (None: no console)."""
        self.runtime = runtime
        self._draining = False
        self._security = security
        metrics_public = security is None or security.settings.metrics_public
        self._openapi_body = orjson.dumps(openapi_document(metrics_public))
        present = {type(s).__name__: s for s in services}
        present[Operations.__name__] = Operations(runtime, lambda: self._openapi_body, lambda: self._draining)
        if console is not None:
            built = console(self.call)
            present[type(built).__name__] = built
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

    async def call(
        self, method: str, path: str, caller: KeyGrant | None, query: Mapping[str, str] | None, body: bytes | None
    ) -> Reply:
        """An admin endpoint called in-process on behalf of ``caller`` (the web console's session key): the same
        dispatch, scope check and handler as over HTTP, answering its reply or raising its APIError."""
        (endpoint, handler), params = self._router.match(method, path)
        if self._security is not None and self._security.settings.auth:
            needed = needed_scope(endpoint, self._security.settings.metrics_public)
            if needed is not None:
                refusal = missing_api_key() if caller is None else authorize_scope(caller, needed)
                if refusal is not None:
                    raise refusal
        headers = [(b"content-type", b"application/json")]
        if caller is None:
            headers.append((b"x-modelyard-actor", b"console"))
        scope = {
            "type": "http",
            "method": method,
            "path": path,
            "query_string": urlencode(query or {}).encode(),
            "headers": headers,
            "client": ("console", 0),
        }
        pending = [body or b""]

        async def receive() -> Message:
            return {"type": "http.request", "body": pending.pop() if pending else b"", "more_body": False}

        async def no_send(message: Message) -> None:
            raise RuntimeError(f"{method} {path} sends its own answer; the console can only call admin replies")

        try:
            reply = await handler(Request(scope, receive, no_send, params, caller))
        except Exception as failure:
            error = to_api_error(failure)
            if error is None:
                raise
            raise error from failure
        if reply is None:
            raise RuntimeError(f"{method} {path} answered nothing the console can show")
        return cast(Reply, reply)

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
