"""A remote OpenAI-compatible endpoint as an upstream: nothing to supervise, so it is always "ready"; whether
it is healthy is the circuit breaker's business (routing/breaker.py), judged from real calls and probes."""

from __future__ import annotations

import asyncio
import os
from urllib.parse import urlsplit


def remote_base_url(url: str) -> str:
    """``https://host/v1`` and ``https://host/v1/`` → ``https://host``: the gateway appends ``/v1/...`` itself."""
    parts = urlsplit(url.rstrip("/"))
    path = parts.path.removesuffix("/v1")
    return f"{parts.scheme}://{parts.netloc}{path}"


def bearer_header(api_key_env: str | None) -> bytes:
    """The ``Authorization`` header line for a remote upstream whose token is in the environment variable
    ``api_key_env`` (read when the target is built, so a rotated secret is picked up on the next reload)."""
    token = os.environ.get(api_key_env, "") if api_key_env else ""
    return f"Authorization: Bearer {token}\r\n".encode() if token else b""


class RemoteUpstream:
    def __init__(self, url: str) -> None:
        self.name = url
        self.url = url
        self.base_url = remote_base_url(url)
        self.ready = True
        self.active_requests = 0
        self.generation = 0  # no process of its own: its failures are the breaker's business

    @property
    def recovering(self) -> bool:
        return False

    async def wait_change(self, timeout_s: float) -> None:
        await asyncio.sleep(timeout_s)

    def retry_after_s(self) -> int:
        return 2

    def unavailable_reason(self) -> str:
        return f"remote upstream {self.url} is not answering"

    def describe(self) -> dict[str, object]:
        return {"name": self.name, "remote": True, "base_url": self.base_url, "active_requests": self.active_requests}
