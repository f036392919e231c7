"""Start, pin, wait for and stop the processes a benchmark compares (servers, gateways, engines).

Every service logs to its own file under the run's results directory, is started in its own process group (so
stopping it also stops what it launched, e.g. the engine behind ``modelyard serve``) and is stopped with SIGTERM,
then SIGKILL, when the scenario ends — also when it ends with an error.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"
PRODUCT_PYTHON = REPO / ".venv" / "bin" / "python"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass(frozen=True)
class Pinning:
    """Which CPUs the load generator and the servers may use (``taskset -c``); empty means unpinned.

    ``split`` puts the load generator on CPU 0 and every server (mock, gateways, engines) on CPU 1, so the client
    never competes with what it measures; ``none`` lets the kernel spread everything over both cores, as a
    production box would.
    """

    client: str = ""
    servers: str = ""

    @classmethod
    def named(cls, name: str) -> Pinning:
        if name == "none":
            return cls()
        if name == "split":
            return cls(client="0", servers="1")
        raise ValueError(f"unknown pinning '{name}' (none, split)")

    def prefix(self, cpus: str) -> list[str]:
        return ["taskset", "-c", cpus] if cpus else []

    def pin_self(self) -> None:
        """Pin the harness process itself (it runs the Python load generators)."""
        if self.client:
            os.sched_setaffinity(0, {int(c) for c in self.client.split(",")})


class Service:
    def __init__(
        self,
        name: str,
        command: list[str],
        ready_url: str,
        log_dir: Path,
        env: dict[str, str] | None = None,
        cwd: Path = REPO,
    ) -> None:
        self.name = name
        self.command = command
        self.ready_url = ready_url
        self.log_path = log_dir / f"{name}.log"
        log_dir.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            command,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            cwd=cwd,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_ready(self, timeout_s: float = 120.0) -> None:
        """Wait for the ready URL to answer 200; a service that never does is stopped before the error is raised."""
        try:
            self._wait_ready(timeout_s)
        except BaseException:
            self.stop(5)
            raise

    def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}; log:\n{self.tail()}")
            try:
                with urllib.request.urlopen(self.ready_url, timeout=2) as answer:
                    if answer.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.2)
        raise TimeoutError(f"{self.name} not ready after {timeout_s:.0f} s; log:\n{self.tail()}")

    def stop(self, timeout_s: float = 20.0) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._log.close()

    def tail(self, chars: int = 3000) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-chars:]


@contextlib.contextmanager
def services() -> Iterator[list[Service]]:
    """A list to append started services to; all are stopped on exit, last started first.

    SIGTERM is turned into an exception meanwhile, so a harness that is killed still stops what it started.
    """
    started: list[Service] = []

    def terminate(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield started
    finally:
        for service in reversed(started):
            service.stop()
        signal.signal(signal.SIGTERM, previous)
