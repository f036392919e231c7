"""A client that disconnects mid-stream must stop the engine's generation, not leave it running."""

from __future__ import annotations

import time

import httpx
import pytest

from conftest import MODEL
from gateway_process import GatewayProcess

pytestmark = pytest.mark.engine


def _engine_busy_slots(engine: str) -> int:
    slots = httpx.get(f"{engine}/slots", timeout=5).json()
    return sum(1 for slot in slots if slot.get("is_processing"))


def _wait_until(condition, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def test_client_disconnect_cancels_the_upstream_generation(gateway: GatewayProcess) -> None:
    engine = f"http://127.0.0.1:{gateway.engine_port()}"
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Tell an endless story."}],
        "max_tokens": 4000,
        "stream": True,
        "ignore_eos": True,
    }
    with httpx.stream("POST", f"{gateway.url}/v1/chat/completions", json=body, timeout=30) as response:
        assert response.status_code == 200
        chunks = response.iter_raw()  # held: dropping the iterator would close the connection already
        received = b""
        for chunk in chunks:
            received += chunk
            if received.count(b'"content":"') >= 5:
                break
        assert _wait_until(lambda: _engine_busy_slots(engine) == 1), "the engine should be generating"
        response.close()  # the client goes away mid-stream
    # The client is gone; the engine slot must be released long before 4000 tokens could be generated.
    assert _wait_until(lambda: _engine_busy_slots(engine) == 0), "the engine kept generating for a gone client"
