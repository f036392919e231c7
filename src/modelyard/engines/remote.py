"""A remote OpenAI-compatible endpoint as an upstream: nothing to supervise, so it is always "ready"; whether
it is healthy is the circuit breaker's business (routing/breaker.py), judged from real calls and probes."""

from __future__ import annotations

from urllib.parse import urlsplit


def remote_base_url(url: str) -> str:
    """``https://host/v1`` and ``https://host/v1/`` → ``https://host``: the gateway appends ``/v1/...`` itself."""
    parts = urlsplit(url.rstrip("/"))
    path = parts.path.removesuffix("/v1")
    return f"{parts.scheme}://{parts.netloc}{path}"


class RemoteUpstream:
    def __init__(self, url: str) -> None:
        self.name = url
        self.url = url
        self.base_url = remote_base_url(url)
        self.ready = True
        self.active_requests = 0

    def retry_after_s(self) -> int:
        return 2

    def unavailable_reason(self) -> str:
        return f"remote upstream {self.url} is not answering"

    def describe(self) -> dict[str, object]:
        return {"name": self.name, "remote": True, "base_url": self.base_url, "active_requests": self.active_requests}
