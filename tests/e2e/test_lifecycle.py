"""Engine supervision and shutdown with real processes: restart after a crash, drain on SIGTERM, no orphans."""

from __future__ import annotations

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


def test_killed_engine_is_restarted_and_requests_recover(start_gateway: StartGateway) -> None:
    gateway = start_gateway("--restart-backoff", "3", "--parallel", "2", "--ctx-size", "4096")
    first_pid = gateway.engine_pid()
    assert httpx.post(gateway.url + "/v1/chat/completions", json=CHAT, timeout=60).status_code == 200

    psutil.Process(first_pid).kill()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and httpx.get(gateway.url + "/ready").status_code == 200:
        time.sleep(0.05)
    not_ready = httpx.get(gateway.url + "/ready")
    assert not_ready.status_code == 503
    assert not_ready.json()["engines"][0]["state"] == "restarting"

    refused = httpx.post(gateway.url + "/v1/chat/completions", json=CHAT, timeout=30)
    assert refused.status_code == 503
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.json()["error"]["code"] == "engine_unavailable"
    assert httpx.get(gateway.url + "/health").status_code == 200  # liveness is unaffected

    gateway.wait_ready(timeout=60)
    info = gateway.ready_info()["engines"][0]
    assert info["restarts"] == 1
    assert info["pid"] != first_pid
    assert httpx.post(gateway.url + "/v1/chat/completions", json=CHAT, timeout=60).status_code == 200
    metrics = httpx.get(gateway.url + "/metrics").text
    assert f'modelyard_engine_restarts_total{{engine="{MODEL_V1}",model="{MODEL}",version="1"}} 1.0' in metrics
    assert len(gateway.engine_processes()) == 1


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
            # Its own data dir: the default one is shared with every checkout on the machine, whose migrations
            # may be ahead of this one ("Can't locate revision ...").
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
