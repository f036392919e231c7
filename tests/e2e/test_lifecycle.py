"""Engine supervision and shutdown with real processes: restart after a crash, drain on SIGTERM, no orphans."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import psutil
import pytest

from load import LoadResult, run

from conftest import MODEL, MODEL_V1
from gateway_process import GatewayProcess, free_port
from registry.gguf_files import write_gguf

pytestmark = [pytest.mark.engine, pytest.mark.slow]

StartGateway = Callable[..., GatewayProcess]

CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "Say something."}], "max_tokens": 4}


def _wait_gone(pid: int, timeout: float = 10.0) -> bool:
    try:
        psutil.Process(pid).wait(timeout)
    except psutil.NoSuchProcess:
        return True
    except psutil.TimeoutExpired:
        return False
    return True


def _port_closed(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def test_killed_engine_loses_no_request(start_gateway: StartGateway) -> None:
    """200 requests from a client that does not retry, ``kill -9`` of the only engine while they run: the ones in
    flight and the ones arriving during the restart wait in the gateway (``gateway/hold.py``) and are answered."""
    gateway = start_gateway("--restart-backoff", "1", "--parallel", "2", "--ctx-size", "4096")
    first_pid = gateway.engine_pid()
    assert httpx.post(gateway.url + "/v1/chat/completions", json=CHAT, timeout=60).status_code == 200

    results: list[LoadResult] = []
    short = {**CHAT, "max_tokens": 1}
    load = threading.Thread(target=lambda: results.append(run(gateway.url, 200, lambda i: short, concurrency=8)))
    load.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and _answered(gateway) < 20:
        time.sleep(0.02)
    psutil.Process(first_pid).kill()
    not_ready = False
    while load.is_alive() and not not_ready:
        not_ready = httpx.get(gateway.url + "/ready").status_code == 503
        assert httpx.get(gateway.url + "/health").status_code == 200  # liveness is unaffected
        time.sleep(0.05)
    load.join(1200)  # seconds on an idle machine; minutes on a shared, overloaded one
    assert results, "the load did not finish"
    result = results[0]
    assert not_ready, "the engine's restart was not seen while the load ran"
    assert result.failed == 0, (result.statuses, result.errors, result.error_bodies)
    assert sum(result.statuses.values()) == 200

    info = gateway.ready_info()["engines"][0]
    assert info["restarts"] == 1
    assert info["pid"] != first_pid
    metrics = httpx.get(gateway.url + "/metrics").text
    assert f'modelyard_engine_restarts_total{{engine="{MODEL_V1}",model="{MODEL}",version="1"}} 1.0' in metrics
    held = _sample(metrics, f'modelyard_held_requests_total{{outcome="served",route="{MODEL}"}}')
    assert held > 0
    assert _sample(metrics, f'modelyard_held_requests_waiting{{route="{MODEL}"}}') == 0
    assert len(gateway.engine_processes()) == 1


def test_a_hung_engine_is_detected_killed_restarted_and_its_request_answered(start_gateway: StartGateway) -> None:
    """SIGSTOP: the engine accepts connections but never answers. Its health checks fail, the supervisor kills and
    restarts it within interval x failures, and the request that was waiting on it is answered by the new one."""
    gateway = start_gateway(
        "--engine-health-interval", "1", "--engine-health-failures", "2", "--restart-backoff", "0.5",
        "--parallel", "2", "--ctx-size", "2048",
    )  # fmt: skip
    first_pid = gateway.engine_pid()
    os.kill(first_pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        answer = httpx.post(gateway.url + "/v1/chat/completions", json={**CHAT, "max_tokens": 1}, timeout=120)
        elapsed = time.monotonic() - started
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(first_pid, signal.SIGCONT)
    assert answer.status_code == 200, answer.text
    info = gateway.ready_info()["engines"][0]
    assert info["restarts"] == 1 and info["pid"] != first_pid
    assert _wait_gone(first_pid)
    print(f"hung engine: answered after {elapsed:.1f} s")


def _answered(gateway: GatewayProcess) -> float:
    text = httpx.get(gateway.url + "/metrics").text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("modelyard_requests_total{") and 'status_class="2xx"' in line
    )


def _sample(metrics: str, name: str) -> float:
    for line in metrics.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_sigterm_lets_an_in_flight_stream_finish_then_stops_everything(start_gateway: StartGateway) -> None:
    gateway = start_gateway("--parallel", "2", "--ctx-size", "4096")
    engine_pid = gateway.engine_pid()
    first_chunk = threading.Event()
    received: list[bytes] = []

    def consume() -> None:
        body = {**CHAT, "max_tokens": 64, "stream": True, "ignore_eos": True}
        with httpx.stream("POST", gateway.url + "/v1/chat/completions", json=body, timeout=120) as response:
            for chunk in response.iter_raw():
                received.append(chunk)
                first_chunk.set()

    reader = threading.Thread(target=consume)
    reader.start()
    assert first_chunk.wait(60)
    gateway.signal(signal.SIGTERM)
    time.sleep(0.5)
    assert _port_closed(gateway.port), "a draining gateway must stop accepting new connections"
    reader.join(120)
    stream = b"".join(received)
    assert stream.rstrip().endswith(b"data: [DONE]")
    assert b'"finish_reason":"length"' in stream
    assert stream.count(b'"content":"') >= 60
    assert gateway.proc.wait(60) == 0
    assert _wait_gone(engine_pid)


def test_ctrl_c_stops_gateway_and_engine(start_gateway: StartGateway) -> None:
    gateway = start_gateway("--parallel", "1", "--ctx-size", "2048")
    engine_pid = gateway.engine_pid()
    gateway.signal(signal.SIGINT)
    assert gateway.proc.wait(60) == 0
    assert _wait_gone(engine_pid)


def test_hard_killed_gateway_leaves_no_orphan_engine(
    start_gateway: StartGateway, tmp_path: Path, default_model_path: Path
) -> None:
    """SIGKILL gives modelyard no chance to clean up; the kernel must take the engine down with it.

    Also covers ``--model PATH``: any local GGUF is registered and served under its file stem.
    """
    other = tmp_path / "my-model.gguf"
    other.symlink_to(default_model_path)
    gateway = start_gateway("--model", str(other), "--parallel", "1", "--ctx-size", "2048")
    ids = [m["id"] for m in httpx.get(gateway.url + "/v1/models").json()["data"]]
    assert ids == ["my-model", "my-model:1", "my-model@production"]
    engine_pid = gateway.engine_pid()
    gateway.signal(signal.SIGKILL)
    gateway.proc.wait(10)
    assert _wait_gone(engine_pid, timeout=10), "engine survived its gateway"


def test_a_file_that_is_not_gguf_is_refused_before_launch(tmp_path: Path) -> None:
    bogus = tmp_path / "weights.gguf"
    bogus.write_bytes(b"PK\x03\x04 this is a zip file")
    result = subprocess.run(
        [sys.executable, "-m", "modelyard", "serve", "--model", str(bogus), "--port", "1"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "is not a GGUF file" in result.stderr


def _engine_pids() -> set[int]:
    return {p.pid for p in psutil.process_iter(["name"]) if p.info["name"] == "llama-server"}


def test_a_taken_port_is_a_clear_error_and_starts_no_engine(tmp_path: Path) -> None:
    engines_before = _engine_pids()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "modelyard", "serve", "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=120,
            # Its own registry: the default data dir is shared with other checkouts, whose newer migrations
            # this tree cannot read ("Can't locate revision").
            env={**os.environ, "MODELYARD_DATA_DIR": str(tmp_path)},
        )
    assert result.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert _engine_pids() <= engines_before


def test_an_engine_that_never_starts_stops_the_gateway_with_its_log(tmp_path: Path, default_model_path: Path) -> None:
    """A well-formed GGUF that is not a usable model (two tensors, no layers): it registers, but llama-server
    refuses it on every launch."""
    broken = write_gguf(tmp_path / "broken.gguf")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "modelyard",
            "serve",
            "--model",
            str(broken),
            "--port",
            str(free_port()),
            "--restart-backoff",
            "0.1",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "MODELYARD_DATA_DIR": str(tmp_path)},
    )
    assert result.returncode == 1
    assert "failed to become ready 3 times in a row" in result.stderr
    assert "failed to load model" in result.stderr  # the engine's own explanation is shown
    assert "nothing can be served" in result.stderr


def test_watching_a_healthy_engine_leaves_no_task_behind(start_gateway: StartGateway) -> None:
    """Each health interval the supervisor waits for the engine to exit or the interval to pass; that wait used to
    be a new task every interval that lived until the engine exited (the soak's asyncio tasks grew by one every
    5 s, idle or not). With a 0.2 s interval, 8 s idle are 40 intervals: the task count must stay put. (Slow
    health answers on a busy machine must not get the engine killed meanwhile: hence the many failures allowed.)"""
    gateway = start_gateway(
        "--engine-health-interval", "0.2", "--engine-health-failures", "1000", "--parallel", "2", "--ctx-size", "2048"
    )
    assert httpx.post(gateway.url + "/v1/chat/completions", json=CHAT, timeout=60).status_code == 200

    def tasks() -> float:
        return _sample(httpx.get(gateway.url + "/metrics", timeout=10).text, "modelyard_asyncio_tasks")

    time.sleep(1.0)
    before = tasks()
    time.sleep(8.0)
    after = tasks()
    assert after - before <= 3, (before, after)
