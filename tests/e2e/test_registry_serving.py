"""Serving reads the registry: promotion and rollback under load, integrity refusal, database outages.

Real gateway, real llama-server engines for two real versions (the default Q4_K_M model and a Q2_K variant
made by ``modelyard models quantize``), real SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from conftest import MODEL, POSTGRES_URL, postgres_schema_url
from gateway_process import GatewayProcess

pytestmark = [pytest.mark.engine, pytest.mark.slow]

V1, V2 = f"{MODEL}:1", f"{MODEL}:2"


def cli(env: dict[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "modelyard", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **env},
    )
    if check and result.returncode != 0:
        raise AssertionError(f"modelyard {' '.join(args)} exited {result.returncode}:\n{result.stderr}")
    return result


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def registry_env(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    env = {"MODELYARD_DATA_DIR": str(tmp_path / "data")}
    if request.param == "postgresql":
        env["MODELYARD_DATABASE_URL"] = postgres_schema_url(request.getfixturevalue("postgres_schema"))
    return env


@pytest.fixture
def serve(tmp_path: Path, engine_build: object, default_model_path: Path) -> Iterator[Callable[..., GatewayProcess]]:
    started: list[GatewayProcess] = []

    def start(env: dict[str, str], *args: str) -> GatewayProcess:
        process = GatewayProcess(
            Path(env["MODELYARD_DATA_DIR"]),
            "--parallel", "2", "--ctx-size", "2048", "--registry-poll", "0.2", *args,
            env=env,
        )  # fmt: skip
        started.append(process)
        process.wait_ready()
        return process

    yield start
    for process in started:
        process.stop()


class Load:
    """Clients sending requests without pause (JSON and streams); every outcome and serving version is kept."""

    def __init__(self, url: str, model: str = MODEL, workers: int = 3) -> None:
        self.url = url
        self.model = model
        self.outcomes: list[tuple[float, int, str]] = []  # (time, status or -1, serving version)
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(workers)]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(120)

    def versions_since(self, since: float) -> Counter[str]:
        return Counter(version for at, _, version in self.outcomes if at >= since)

    def wait_for_version(self, version: str, timeout: float = 90) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            recent = [v for at, _, v in self.outcomes[-6:]]
            if len(recent) == 6 and all(v == version for v in recent):
                return time.monotonic()
            time.sleep(0.1)
        raise AssertionError(f"traffic never settled on {version}: {self.outcomes[-10:]}")

    def _run(self, index: int) -> None:
        stream = index % 2 == 1
        with httpx.Client(timeout=120) as client:
            while not self._stop.is_set():
                body = {"model": self.model, "messages": [{"role": "user", "content": "Count to five."}],
                        "max_tokens": 12, "stream": stream}  # fmt: skip
                try:
                    with client.stream("POST", self.url + "/v1/chat/completions", json=body) as response:
                        payload = response.read()
                        version = response.headers.get("x-modelyard-model-version", "?")
                        ok = response.status_code == 200 and (not stream or payload.rstrip().endswith(b"[DONE]"))
                        if not ok:
                            self.failures.append(f"{response.status_code}: {payload[:300]!r}")
                        self.outcomes.append((time.monotonic(), response.status_code, version))
                except httpx.HTTPError as exc:
                    self.failures.append(repr(exc))
                    self.outcomes.append((time.monotonic(), -1, "?"))


def test_promote_and_roll_back_under_load_without_a_failed_request(
    serve: Callable[..., GatewayProcess], registry_env: dict[str, str], tmp_path: Path
) -> None:
    gateway = serve(registry_env)
    made = cli(registry_env, "models", "quantize", MODEL, "--type", "Q2_K", "--output", str(tmp_path / "q2k.gguf"))
    assert f"Registered {V2} (Q2_K) from {V1}" in made.stdout

    with Load(gateway.url) as load:
        load.wait_for_version(V1)
        cli(registry_env, "models", "promote", MODEL, "2", "--actor", "release-bot")
        promoted_at = load.wait_for_version(V2)
        cli(registry_env, "models", "rollback", MODEL, "--actor", "oncall")
        rolled_back_at = load.wait_for_version(V1)
        time.sleep(1)
    assert load.failures == []
    assert len(load.outcomes) > 20
    assert load.versions_since(promoted_at)[V2] > 0 and load.versions_since(rolled_back_at)[V2] == 0
    sequence = [v for _, _, v in load.outcomes]
    first_v2, last_v2 = sequence.index(V2), len(sequence) - 1 - sequence[::-1].index(V2)
    assert set(sequence[:first_v2]) == {V1} and set(sequence[last_v2 + 1 :]) == {V1}

    shown = json.loads(cli(registry_env, "models", "show", MODEL, "--json").stdout)
    assert shown["aliases"] == {"production": 1}
    v2 = shown["versions"][1]
    assert (v2["quantization"], v2["parent"]) == ("Q2_K", V1)
    moves = [(e["from_version"], e["to_version"], e["actor"]) for e in shown["events"] if e["kind"] == "alias_moved"]
    assert moves[-2:] == [(1, 2, "release-bot"), (2, 1, "oncall")]

    deadline = time.monotonic() + 30
    while gateway.ready_info()["retiring"] and time.monotonic() < deadline:
        time.sleep(0.2)
    info = gateway.ready_info()
    assert [e["name"] for e in info["engines"]] == [V1] and info["retiring"] == []  # v2 drained and stopped
    assert len(gateway.engine_processes()) == 1


def test_a_corrupted_artifact_is_refused_and_traffic_stays(
    serve: Callable[..., GatewayProcess], tmp_path: Path, default_model_path: Path
) -> None:
    env = {"MODELYARD_DATA_DIR": str(tmp_path / "data")}
    gateway = serve(env)
    cli(env, "models", "quantize", MODEL, "--type", "Q2_K", "--output", str(tmp_path / "q2k.gguf"))
    artifact = tmp_path / "q2k.gguf"
    with artifact.open("r+b") as handle:  # one flipped byte deep inside the tensor data
        handle.seek(artifact.stat().st_size // 2)
        byte = handle.read(1)
        handle.seek(-1, os.SEEK_CUR)
        handle.write(bytes([byte[0] ^ 0xFF]))

    with Load(gateway.url, workers=2) as load:
        load.wait_for_version(V1)
        cli(env, "models", "promote", MODEL, "2")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            events = json.loads(cli(env, "models", "show", MODEL, "--json").stdout)["events"]
            if any(e["kind"] == "integrity_failed" for e in events):
                break
            time.sleep(0.3)
        time.sleep(1)
    assert load.failures == []
    assert set(v for _, _, v in load.outcomes) == {V1}  # traffic never moved to the refused version

    refusal = next(e for e in events if e["kind"] == "integrity_failed")
    assert refusal["version"] == 2 and "has sha256" in refusal["detail"]["error"]
    explicit = httpx.post(
        gateway.url + "/v1/completions", json={"model": V2, "prompt": "Hi", "max_tokens": 2}, timeout=30
    )
    assert explicit.status_code == 503
    assert "failed its integrity check" in explicit.json()["error"]["message"]
    engines = {e["name"]: e for e in gateway.ready_info()["engines"]}
    assert engines[V2]["state"] == "failed" and engines[V1]["state"] == "ready"
    assert "refused" in cli(env, "models", "show", MODEL).stdout


@pytest.mark.postgres
def test_inference_keeps_serving_while_the_database_is_down(
    serve: Callable[..., GatewayProcess], tmp_path: Path, postgres_schema: str
) -> None:
    from tcp_proxy import TcpProxy

    url = httpx.URL(POSTGRES_URL)
    proxy = TcpProxy(url.host, url.port or 5432).start()
    env = {
        "MODELYARD_DATA_DIR": str(tmp_path / "data"),
        "MODELYARD_DATABASE_URL": postgres_schema_url(postgres_schema).replace(
            f"{url.host}:{url.port}", f"127.0.0.1:{proxy.port}"
        ),
    }
    gateway = serve(env)
    chat = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}
    assert httpx.get(gateway.url + "/admin/models", timeout=10).status_code == 200

    proxy.stop()
    started = time.monotonic()
    admin = httpx.get(gateway.url + "/admin/models", timeout=30)
    assert admin.status_code == 503 and admin.json()["error"]["code"] == "registry_unavailable"
    assert time.monotonic() - started < 10  # fails clearly, does not hang
    for _ in range(5):
        assert httpx.post(gateway.url + "/v1/chat/completions", json=chat, timeout=60).status_code == 200
    deadline = time.monotonic() + 10
    while gateway.ready_info()["registry"]["reachable"] and time.monotonic() < deadline:
        time.sleep(0.2)
    ready = httpx.get(gateway.url + "/ready", timeout=10)
    assert ready.status_code == 200 and ready.json()["registry"]["reachable"] is False

    proxy.start(port=proxy.port)
    deadline = time.monotonic() + 20
    while httpx.get(gateway.url + "/admin/models", timeout=30).status_code != 200:
        assert time.monotonic() < deadline, "admin API did not recover with the database"
        time.sleep(0.5)
    deadline = time.monotonic() + 20
    while not gateway.ready_info()["registry"]["reachable"]:  # though nothing changed in the registry meanwhile
        assert time.monotonic() < deadline, "/ready did not see the registry back"
        time.sleep(0.5)
    proxy.stop()


def test_inference_keeps_serving_while_the_sqlite_database_is_locked_away(
    serve: Callable[..., GatewayProcess], tmp_path: Path
) -> None:
    """SQLite cannot drop off a network; it goes away when another process holds its write lock (a stuck script, a
    backup, a hung CLI) — every transaction of the gateway (each begins IMMEDIATE) then waits out the busy timeout
    and fails. Inference keeps serving from memory, the admin API answers 503 registry_unavailable, /ready says
    the registry is unreachable, and all of it recovers when the lock goes."""
    import sqlite3

    env = {"MODELYARD_DATA_DIR": str(tmp_path / "data")}
    gateway = serve(env)
    chat = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}
    assert httpx.get(gateway.url + "/admin/models", timeout=10).status_code == 200

    lock = sqlite3.connect(tmp_path / "data" / "modelyard.db", isolation_level=None, timeout=60)
    lock.execute("BEGIN IMMEDIATE")
    try:
        admin: list[httpx.Response] = []
        waiting = threading.Thread(
            target=lambda: admin.append(httpx.get(gateway.url + "/admin/models", timeout=90)), daemon=True
        )
        started = time.monotonic()
        waiting.start()
        for _ in range(5):  # served while the admin call waits on the lock
            answer = httpx.post(gateway.url + "/v1/chat/completions", json=chat, timeout=30)
            assert answer.status_code == 200, answer.text
        assert waiting.is_alive() or admin[0].status_code == 503
        waiting.join(60)
        assert admin and admin[0].status_code == 503, admin
        assert admin[0].json()["error"]["code"] == "registry_unavailable"
        assert "locked" in admin[0].json()["error"]["message"]
        assert time.monotonic() - started < 45  # the busy timeout (30 s), then a clear answer
        deadline = time.monotonic() + 45
        while gateway.ready_info()["registry"]["reachable"] and time.monotonic() < deadline:
            time.sleep(0.5)
        ready = httpx.get(gateway.url + "/ready", timeout=10)
        assert ready.status_code == 200 and ready.json()["registry"]["reachable"] is False
        assert httpx.post(gateway.url + "/v1/chat/completions", json=chat, timeout=30).status_code == 200
    finally:
        lock.execute("ROLLBACK")
        lock.close()

    deadline = time.monotonic() + 60
    while httpx.get(gateway.url + "/admin/models", timeout=60).status_code != 200:
        assert time.monotonic() < deadline, "admin API did not recover with the database"
        time.sleep(0.5)
    deadline = time.monotonic() + 30
    while not gateway.ready_info()["registry"]["reachable"]:  # though nothing changed in the registry meanwhile
        assert time.monotonic() < deadline, "/ready did not see the registry back"
        time.sleep(0.5)
