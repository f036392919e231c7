"""The product's own runtime driven in-process: the ASGI app called directly, in the test's event loop, in front of
fake upstreams (``bench/mock_upstream.py`` processes speaking the real protocol).

``serving(...)`` builds the same :class:`~modelyard.roles.runtime.Runtime` a gateway process runs, over
``deploy/static.py``'s control plane (fixed URLs, or a deployments document of remote targets), starts it, and
yields an ``httpx.AsyncClient`` bound to the app with ``ASGITransport`` (no socket between client and gateway).
``raw_call`` drives the ASGI protocol by hand, for what a buffered client cannot show: a client that goes away
mid-stream, and each body message as it is sent.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
from prometheus_client.parser import text_string_to_metric_families

from modelyard.api.console.settings import ConsoleSettings
from modelyard.deploy.static import StaticUpstreams
from modelyard.gateway.settings import GatewaySettings
from modelyard.observability.metrics import GatewayMetrics
from modelyard.observability.routing_metrics import RoutingMetrics
from modelyard.observability.settings import ObservabilitySettings
from modelyard.roles.runtime import Runtime, StoredState
from modelyard.roles.stores import open_database
from modelyard.routing.config import parse_deployments
from modelyard.security.layer import SecurityLayer


@dataclass
class Gateway:
    runtime: Runtime
    client: httpx.AsyncClient
    control: StaticUpstreams

    def apply(self, deployments: str) -> None:
        """Serve a new deployments document (as a reload would)."""
        self.control.apply(parse_deployments(deployments, "test"), "test")

    def metric(self, name: str, **labels: str) -> float:
        """Sum of the samples of ``name`` whose labels include ``labels``."""
        text = self.runtime.metrics.render().decode()
        return sum(
            sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
        )


@contextlib.asynccontextmanager
async def serving(
    upstreams: Mapping[str, Sequence[str]] | None = None,
    deployments: str | None = None,
    request_log: Path | None = None,
    security: SecurityLayer | None = None,
    metrics: GatewayMetrics | None = None,
    max_body_bytes: int = 65536,
    watched: bool = True,
    bodies: tuple[str, ...] = (),
    state: Path | None = None,
    gateway_settings: GatewaySettings | None = None,
    console: ConsoleSettings | None = None,
) -> AsyncIterator[Gateway]:
    """``state``: a SQLite file for stored responses, files and batches (the Batch API runs only with one)."""
    metrics = metrics or GatewayMetrics()
    spec = parse_deployments(deployments, "test") if deployments else None
    control = StaticUpstreams(metrics, upstreams, spec)
    database = open_database(f"sqlite:///{request_log}").url if request_log is not None else None
    observability = ObservabilitySettings(
        log_requests=False, request_log=database is not None, request_log_bodies=bodies
    )
    runtime = Runtime(
        control,
        metrics,
        RoutingMetrics(metrics.registry),
        gateway_settings or GatewaySettings(max_body_bytes=max_body_bytes),
        observability,
        request_log=database,
        security=security,
        watched=watched,
        state=StoredState(open_database(f"sqlite:///{state}")) if state is not None else None,
        console=console,
    )
    await runtime.start()
    transport = httpx.ASGITransport(app=runtime.app, client=("127.0.0.1", 40000))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway", timeout=60) as client:
            yield Gateway(runtime, client, control)
    finally:
        await runtime.stop()


def chat(model: str, content: str = "Say hi.", max_tokens: int = 4, **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": content}], "max_tokens": max_tokens, **extra}


@dataclass
class RawAnswer:
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    pieces: list[bytes] = field(default_factory=list)  # each http.response.body message's bytes
    complete: bool = False

    @property
    def body(self) -> bytes:
        return b"".join(self.pieces)

    def json(self) -> Any:
        return orjson.loads(self.body)


async def raw_call(
    app: Any,
    method: str,
    path: str,
    body: bytes | dict[str, Any] = b"",
    headers: Mapping[str, str] | None = None,
    body_chunks: Sequence[bytes] | None = None,
    disconnect_after_pieces: int | None = None,
    disconnect_before_body: bool = False,
    disconnect_after_s: float | None = None,
) -> RawAnswer:
    """One request through the ASGI protocol by hand. ``disconnect_after_pieces``: the client goes away once that
    many body messages have arrived; ``disconnect_before_body``: it goes away while the body is being sent;
    ``disconnect_after_s``: it goes away after that long, whatever it received."""
    payload = orjson.dumps(body) if isinstance(body, dict) else body
    chunks = list(body_chunks) if body_chunks is not None else [payload]
    sent_headers = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    if isinstance(body, dict):
        sent_headers.append((b"content-type", b"application/json"))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": sent_headers,
        "client": ("127.0.0.1", 40001),
        "server": ("gateway", 80),
    }
    answer = RawAnswer()
    gone = asyncio.Event()
    finished = asyncio.Event()
    messages = [
        {"type": "http.request", "body": chunk, "more_body": i < len(chunks) - 1} for i, chunk in enumerate(chunks)
    ]
    if disconnect_before_body:
        messages = messages[:1]
        messages[0]["more_body"] = True

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop(0)
        if disconnect_before_body:
            return {"type": "http.disconnect"}
        waiter = asyncio.ensure_future(gone.wait())
        done = asyncio.ensure_future(finished.wait())
        waits = [waiter, done]
        if disconnect_after_s is not None:
            waits.append(asyncio.ensure_future(asyncio.sleep(disconnect_after_s)))
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        for waiting in waits:
            waiting.cancel()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            answer.status = message["status"]
            answer.headers = {k.decode(): v.decode() for k, v in message["headers"]}
        elif message["type"] == "http.response.body":
            answer.pieces.append(message.get("body", b""))
            if not message.get("more_body", False):
                answer.complete = True
                finished.set()
            elif disconnect_after_pieces is not None and len(answer.pieces) >= disconnect_after_pieces:
                gone.set()

    await app(scope, receive, send)
    finished.set()
    return answer
