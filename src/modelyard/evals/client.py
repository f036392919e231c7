"""Talking to a running modelyard gateway the way any client does: OpenAI-compatible HTTP.

Evals go through the gateway on purpose: they measure what users get (routing, templates, the engine's real
settings), and the ``x-modelyard-model-version`` header names the concrete version that answered, which is the
version the run is stored against.

Failure policy: connection errors and 429/502/503/504 are transient and retried with back-off. If they persist,
or the target disappears (404), the gateway cannot serve this run and the run is *aborted* — it would be wrong
to record those as model failures. A timeout, or any other refusal of one request (e.g. a prompt longer than the
context), is that case's error; the run goes on.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import aiohttp

VERSION_HEADER = "x-modelyard-model-version"
_TRANSIENT = {429, 502, 503, 504}


class GatewayUnavailable(RuntimeError):
    """The gateway cannot serve the run (unreachable, target gone, persistent 5xx): abort, do not score."""


class UnknownTarget(GatewayUnavailable):
    pass


class CaseFailed(RuntimeError):
    """One request failed in a way that belongs to the case (timeout, 4xx); ``attempts`` were made."""

    def __init__(self, message: str, attempts: int) -> None:
        super().__init__(message)
        self.attempts = attempts


@dataclass(frozen=True)
class Reply:
    text: str
    latency_ms: float
    prompt_tokens: int | None
    completion_tokens: int | None
    version: str
    attempts: int


class GatewayClient:
    def __init__(self, base_url: str, session: aiohttp.ClientSession, retries: int = 2, backoff_s: float = 0.5):
        self.base_url = base_url.rstrip("/")
        self._session = session
        self._retries = retries
        self._backoff_s = backoff_s

    async def served_models(self) -> list[str]:
        try:
            async with self._session.get(f"{self.base_url}/v1/models", timeout=aiohttp.ClientTimeout(total=10)) as r:
                if r.status != 200:
                    raise GatewayUnavailable(f"{self.base_url}/v1/models answered {r.status}: {await _message(r)}")
                data = await r.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise GatewayUnavailable(f"cannot reach the modelyard gateway at {self.base_url}: {exc}") from None
        return [str(m.get("id")) for m in data.get("data", [])]

    async def check_target(self, target: str) -> None:
        served = await self.served_models()
        if target not in served:
            raise UnknownTarget(
                f"unknown target '{target}': the gateway at {self.base_url} serves {', '.join(served) or 'nothing'}"
            )

    async def generate(self, route: str, kind: str, body: dict[str, Any], timeout_s: float) -> Reply:
        """One chat or completion request with retries; raises CaseFailed or GatewayUnavailable."""
        path = "/v1/chat/completions" if kind == "chat" else "/v1/completions"
        payload = {**body, "model": route, "stream": False}
        last_problem = ""
        for attempt in range(1, self._retries + 2):
            started = time.perf_counter()
            try:
                async with self._session.post(
                    self.base_url + path, json=payload, timeout=aiohttp.ClientTimeout(total=timeout_s)
                ) as response:
                    if response.status == 200:
                        data = await response.json(content_type=None)
                        latency = (time.perf_counter() - started) * 1000
                        return _reply(data, response.headers.get(VERSION_HEADER, ""), latency, attempt, kind)
                    message = await _message(response)
                    if response.status == 404:
                        raise UnknownTarget(f"the gateway no longer serves '{route}': {message}")
                    if response.status not in _TRANSIENT:
                        raise CaseFailed(f"HTTP {response.status}: {message}", attempt)
                    last_problem = f"HTTP {response.status}: {message}"
                    retry_after = _retry_after(response.headers.get("retry-after"))
            except TimeoutError:
                raise CaseFailed(f"timed out after {timeout_s:g} s", attempt) from None
            except aiohttp.ClientConnectionError as exc:
                last_problem = f"connection failed: {exc}"
                retry_after = None
            if attempt <= self._retries:
                await asyncio.sleep(retry_after if retry_after is not None else self._backoff_s * 2 ** (attempt - 1))
        raise GatewayUnavailable(
            f"the gateway at {self.base_url} could not serve '{route}' after {self._retries + 1} attempts: "
            f"{last_problem}"
        )


def _reply(data: dict[str, Any], version: str, latency_ms: float, attempts: int, kind: str) -> Reply:
    choice = (data.get("choices") or [{}])[0]
    text = (choice.get("message") or {}).get("content") if kind == "chat" else choice.get("text")
    usage = data.get("usage") or {}
    return Reply(
        text=text or "",
        latency_ms=latency_ms,
        prompt_tokens=usage.get("prompt_tokens"),
        completion_tokens=usage.get("completion_tokens"),
        version=version or str(data.get("model", "")),
        attempts=attempts,
    )


async def _message(response: aiohttp.ClientResponse) -> str:
    try:
        data = await response.json(content_type=None)
        return str(data["error"]["message"])
    except Exception:
        return (await response.text())[:300]


def _retry_after(value: str | None) -> float | None:
    try:
        return min(5.0, max(0.0, float(value))) if value else None
    except ValueError:
        return None
