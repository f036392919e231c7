"""Run a real ``modelyard serve`` (or ``modelyard gateway``) in a child process for end-to-end tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil

from modelyard.engines.process import kill_with_parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class GatewayProcess:
    def __init__(
        self, data_dir: Path, *extra_args: str, env: dict[str, str] | None = None, command: str = "serve"
    ) -> None:
        """``command``: ``serve`` (all in one) or ``gateway`` (a stateless replica in front of engines)."""
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = data_dir / f"gateway-{self.port}.log"
        data_dir.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "modelyard", command, "--port", str(self.port), "--log-level", "info", *extra_args],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            # Auth is off unless a test turns it on: the explicit switch (warned about in the log and /ready) keeps
            # the engine/registry/observability tests about their own subject; tests/security runs with keys.
            env={"MODELYARD_AUTH": "off", **os.environ, "MODELYARD_DATA_DIR": str(data_dir), **(env or {})},
            preexec_fn=kill_with_parent,  # a killed test run takes its gateways (and so their engines) with it
        )

    def wait_ready(self, timeout: float = 180.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gateway exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/ready", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"gateway not ready after {timeout} s:\n{self.log()}")

    def ready_info(self) -> dict:
        return httpx.get(f"{self.url}/ready", timeout=5).json()

    def engine(self, key: str) -> dict | None:
        """The engine serving version ``key`` as ``/ready`` lists it (None while the gateway does not answer)."""
        try:
            return next((e for e in self.ready_info()["engines"] if e["name"] == key), None)
        except httpx.HTTPError:
            return None

    def wait_engine(self, key: str, timeout: float, previous_pid: int | None = None) -> dict:
        """Until the engine for ``key`` is ready (in a process other than ``previous_pid``); its failure raises."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            engine = self.engine(key)
            if engine and engine["ready"] and engine["pid"] != previous_pid:
                return engine
            if engine and engine["state"] == "failed":
                raise AssertionError(f"engine {key} failed: {engine}\n{self.log()}")
            time.sleep(1)
        raise TimeoutError(f"engine {key} not ready after {timeout} s:\n{self.log()}")

    def engine_pid(self) -> int:
        return self.ready_info()["engines"][0]["pid"]

    def engine_processes(self) -> list[psutil.Process]:
        try:
            children = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []
        return [p for p in children if "llama-server" in p.name()]

    def engine_port(self) -> int:
        cmdline = psutil.Process(self.engine_pid()).cmdline()
        return int(cmdline[cmdline.index("--port") + 1])

    def signal(self, sig: signal.Signals) -> None:
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 60.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-6000:]
