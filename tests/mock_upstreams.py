"""Fake OpenAI-compatible upstreams (bench/mock_upstream.py, speaking the real HTTP protocol) for tests whose
point is the gateway itself: routing, retries, ejection, shadow traffic."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

from modelyard.engines.process import kill_with_parent

from gateway_process import free_port

REPO = Path(__file__).resolve().parent.parent


class MockUpstream:
    def __init__(self, *args: str, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.mock_upstream", "--port", str(self.port), *args],
            cwd=REPO,
            preexec_fn=kill_with_parent,
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise TimeoutError(f"mock upstream on {self.port} did not start")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
