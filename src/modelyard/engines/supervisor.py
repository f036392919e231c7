"""Keep one engine process alive: launch, wait until ready, restart with back-off, stop gracefully.

The supervisor owns the process; the gateway only reads :attr:`EngineSupervisor.ready` and
:attr:`EngineSupervisor.base_url` (plain attribute reads on the hot path). Readiness is the engine's own
``/health`` answering 200, checked at start and periodically afterwards so a hung engine is restarted too.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from modelyard.engines.process import free_loopback_port, kill_with_parent
from modelyard.engines.settings import EngineSettings

log = logging.getLogger("modelyard.engine")


class EngineState(enum.StrEnum):
    STARTING = "starting"
    READY = "ready"
    RESTARTING = "restarting"
    STOPPING = "stopping"
    STOPPED = "stopped"
    FAILED = "failed"


@dataclass(frozen=True)
class RestartPolicy:
    initial_backoff_s: float = 1.0
    max_backoff_s: float = 30.0
    multiplier: float = 2.0
    stable_after_s: float = 60.0  # an engine up this long resets the back-off
    max_failed_starts: int = 3  # consecutive launches that never became ready before giving up
    ready_timeout_s: float = 120.0
    health_interval_s: float = 5.0
    health_failures_to_restart: int = 3
    stop_grace_s: float = 10.0

    def backoff(self, attempt: int) -> float:
        return min(self.max_backoff_s, self.initial_backoff_s * self.multiplier ** max(0, attempt - 1))

    @classmethod
    def of(cls, settings: EngineSettings) -> RestartPolicy:
        """The policy with the two knobs ``modelyard serve`` exposes taken from its engine settings."""
        return cls(
            initial_backoff_s=settings.engine_restart_backoff_s,
            ready_timeout_s=settings.engine_ready_timeout_s,
            health_interval_s=settings.engine_health_interval_s,
            health_failures_to_restart=settings.engine_health_failures,
        )


CommandFactory = Callable[[int], list[str]]


class LaunchRefused(RuntimeError):
    """Raised by a pre-launch check (e.g. artifact integrity): the engine must not start, and retrying won't help."""


class EngineSupervisor:
    def __init__(
        self,
        name: str,
        command: CommandFactory,
        log_path: Path,
        policy: RestartPolicy | None = None,
        on_change: Callable[[EngineSupervisor], None] | None = None,
        pre_launch: Callable[[], Awaitable[None]] | None = None,
        port: int | None = None,
        kind: str = "llama.cpp",
    ) -> None:
        """``port``: where the engine listens (``modelyard engine``: the Pod's port); None picks a free loopback
        port at every launch (engines behind ``modelyard serve``)."""
        self.name = name
        self._port = port
        self.kind = kind  # the engine kind, for /ready and metrics
        self.cold_start_s: float | None = None  # launch → first healthy answer, of the latest start
        self._command = command
        self._pre_launch = pre_launch
        self.failure: str | None = None  # why the engine is FAILED, for errors and /ready
        self.active_requests = 0  # maintained by the gateway; a retired engine is drained to 0 before stopping
        self.log_path = log_path
        self.policy = policy or RestartPolicy()
        self._on_change = on_change
        self.state = EngineState.STOPPED
        self.ready = False
        self.base_url = ""
        self.pid: int | None = None
        self.restarts = 0
        self.generation = 0  # processes launched so far (the gateway's breaker forgets an old one's failures)
        self.last_exit_code: int | None = None
        self.next_attempt_at = 0.0
        self._process: asyncio.subprocess.Process | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._session: aiohttp.ClientSession | None = None
        self._state_changed = asyncio.Event()

    # -- public -------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Begin supervising in the background; :attr:`ready` turns true once the engine answers."""
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5))
        self._task = asyncio.create_task(self._run(), name=f"engine-{self.name}")

    def retry_after_s(self) -> int:
        """A client-facing hint for ``Retry-After`` while the engine is not ready."""
        if self.state == EngineState.RESTARTING:
            return max(1, int(self.next_attempt_at - time.monotonic() + 0.999) + 2)
        return 2

    @property
    def recovering(self) -> bool:
        """Not ready, but on its way: starting, or between a crash and the next launch."""
        return self.state in (EngineState.STARTING, EngineState.RESTARTING) and not self._stopping

    async def wait_change(self, timeout_s: float) -> None:
        """Return at the next state change (or after ``timeout_s``): what held requests wait on."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._state_changed.wait(), timeout_s)

    async def wait_settled(self) -> None:
        """Return once the engine is ready or has given up (failed, refused, stopped)."""
        while not self.ready and self.state not in (EngineState.FAILED, EngineState.STOPPED):
            await self._state_changed.wait()

    def unavailable_reason(self) -> str:
        if self.failure is not None:
            return self.failure
        return f"engine is {self.state.value}"

    def describe(self) -> dict[str, object]:
        return {
            "name": self.name,
            "kind": self.kind,
            "state": self.state.value,
            "cold_start_s": self.cold_start_s,
            "ready": self.ready,
            "pid": self.pid,
            "restarts": self.restarts,
            "last_exit_code": self.last_exit_code,
            "active_requests": self.active_requests,
            "failure": self.failure,
        }

    async def stop(self) -> None:
        self._stopping = True
        self._set_state(EngineState.STOPPING, ready=False)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._terminate()
        if self._session is not None:
            await self._session.close()
        self._set_state(EngineState.STOPPED, ready=False)

    # -- supervision loop ---------------------------------------------------------------------------------

    async def _run(self) -> None:
        failed_starts = 0
        attempt = 0
        while not self._stopping:
            attempt += 1
            self._set_state(EngineState.STARTING if self.restarts == 0 else EngineState.RESTARTING, ready=False)
            if self._pre_launch is not None:
                try:
                    await self._pre_launch()
                except LaunchRefused as refused:
                    log.error("engine %s not started: %s", self.name, refused)
                    self.failure = str(refused)
                    self._set_state(EngineState.FAILED, ready=False)
                    return
            launched_at = time.monotonic()
            became_ready = await self._launch_and_wait_ready()
            if became_ready:
                failed_starts = 0
                self._set_state(EngineState.READY, ready=True)
                await self._watch_until_exit()
                if time.monotonic() - launched_at > self.policy.stable_after_s:
                    attempt = 1
            else:
                failed_starts += 1
                await self._terminate()
            if self._stopping:
                return
            if failed_starts >= self.policy.max_failed_starts:
                log.error(
                    "engine %s failed to become ready %d times in a row; giving up. Last log lines:\n%s",
                    self.name,
                    failed_starts,
                    self.log_tail(),
                )
                self.failure = f"engine failed to start {failed_starts} times; see {self.log_path}"
                self._set_state(EngineState.FAILED, ready=False)
                return
            delay = self.policy.backoff(attempt)
            self.restarts += 1
            self.next_attempt_at = time.monotonic() + delay
            self._set_state(EngineState.RESTARTING, ready=False)
            log.warning(
                "engine %s exited (code %s); restart #%d in %.1f s",
                self.name,
                self.last_exit_code,
                self.restarts,
                delay,
            )
            await asyncio.sleep(delay)

    async def _launch_and_wait_ready(self) -> bool:
        port = self._port or free_loopback_port()
        argv = self._command(port)
        launched_at = time.monotonic()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as sink:
            sink.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} launching: {' '.join(argv)}\n".encode())
            sink.flush()
            self._process = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=sink,
                stderr=sink,
                start_new_session=True,
                preexec_fn=kill_with_parent,
            )
        self.pid = self._process.pid
        self.generation += 1
        self.base_url = f"http://127.0.0.1:{port}"
        log.info("engine %s launched (pid %d, port %d)", self.name, self.pid, port)
        deadline = time.monotonic() + self.policy.ready_timeout_s
        while time.monotonic() < deadline:
            if self._process.returncode is not None:
                self.last_exit_code = self._process.returncode
                log.error("engine %s exited during start (code %s)", self.name, self.last_exit_code)
                return False
            if await self._healthy():
                self.cold_start_s = round(time.monotonic() - launched_at, 3)
                log.info("engine %s ready at %s after %.1f s", self.name, self.base_url, self.cold_start_s)
                return True
            await asyncio.sleep(0.1)
        log.error("engine %s not ready after %.0f s", self.name, self.policy.ready_timeout_s)
        return False

    async def _watch_until_exit(self) -> None:
        """Return when the process exits, or after killing it because it stopped answering health checks."""
        assert self._process is not None
        failures = 0
        # One wait for the process's whole life. (A fresh ``shield(process.wait())`` per health interval left each
        # timed-out wait running until the process exited: one asyncio task more every 5 s, for as long as the
        # engine lived — 720 an hour, found by the soak.)
        exited = asyncio.ensure_future(self._process.wait())
        try:
            while True:
                await asyncio.wait((exited,), timeout=self.policy.health_interval_s)
                if exited.done():
                    self.last_exit_code = exited.result()
                    self._set_state(EngineState.RESTARTING, ready=False)
                    return
                if await self._healthy():
                    failures = 0
                    continue
                failures += 1
                if failures >= self.policy.health_failures_to_restart:
                    # Hung (e.g. stopped, or stuck in a kernel): a graceful stop would only wait out its grace.
                    log.error("engine %s failed %d health checks; killing it", self.name, failures)
                    self._set_state(EngineState.RESTARTING, ready=False)
                    await self._kill()
                    return
        finally:
            exited.cancel()  # done already, or the watch itself was cancelled (the gateway stopping)

    async def scrape_metrics(self, timeout_s: float = 1.0) -> str | None:
        """The engine's own Prometheus text, or None when it is not ready or does not answer in time."""
        if not self.ready or self._session is None:
            return None
        try:
            timeout = aiohttp.ClientTimeout(total=timeout_s)
            async with self._session.get(f"{self.base_url}/metrics", timeout=timeout) as response:
                return await response.text() if response.status == 200 else None
        except (aiohttp.ClientError, TimeoutError, OSError):
            return None

    async def _healthy(self) -> bool:
        assert self._session is not None
        timeout = aiohttp.ClientTimeout(total=min(5.0, self.policy.health_interval_s))
        try:
            async with self._session.get(f"{self.base_url}/health", timeout=timeout) as response:
                return response.status == 200
        except (aiohttp.ClientError, TimeoutError, OSError):
            return False

    async def _kill(self) -> None:
        process = self._process
        if process is None or process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        await process.wait()
        self.last_exit_code = process.returncode

    async def _terminate(self) -> None:
        process = self._process
        if process is None or process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), self.policy.stop_grace_s)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await process.wait()
        self.last_exit_code = process.returncode

    def _set_state(self, state: EngineState, *, ready: bool) -> None:
        """Listeners hear every transition (rare, and their updates are idempotent), including restart counts."""
        if state != self.state:
            fields = {
                "event": "engine_state",
                "engine": self.name,
                "state": state.value,
                "pid": self.pid,
                "restarts": self.restarts,
                "exit_code": self.last_exit_code,
                "failure": self.failure,
            }
            log.info("engine %s is %s", self.name, state.value, extra={"fields": fields})
        self.state = state
        self.ready = ready
        self._state_changed.set()
        self._state_changed = asyncio.Event()
        if self._on_change is not None:
            self._on_change(self)

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no engine log)"
