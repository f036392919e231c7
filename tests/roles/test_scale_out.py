"""Scale-out on loopback: three ``modelyard gateway`` replicas and two ``modelyard engine`` processes sharing the real
PostgreSQL (one private schema) and Redis (one private prefix), as a gateway Deployment and an engine Deployment
would on Kubernetes. One set of processes for the whole module; the tests run in order and the last ones stop
gateways (SIGTERM under load, then SIGKILL of the lease holder)."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from modelyard.engines.llamacpp_build import EngineBuild
from modelyard.engines.process import kill_with_parent
from modelyard.registry.bootstrap import ensure_default_registered
from modelyard.registry.integrity import IntegrityChecker
from modelyard.roles.stores import open_database, registry_store
from modelyard.store.database import Database
from modelyard.store.leases import Leases

from conftest import MODEL, POSTGRES_URL, postgres_schema_url
from gateway_process import GatewayProcess, free_port

pytestmark = [pytest.mark.engine, pytest.mark.slow, pytest.mark.postgres]

REDIS_URL = os.environ.get("MODELYARD_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
COMPLETION = {"model": MODEL, "prompt": "Hi", "max_tokens": 1, "temperature": 0}


class EngineProcess:
    """A real ``modelyard engine --model …`` (one supervised llama-server) in a child process."""

    def __init__(self, data_dir: Path, env: dict[str, str]) -> None:
        self.port = free_port()
        self.ops_port = free_port()
        data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = data_dir / f"engine-{self.port}.log"
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "modelyard", "engine", "--model", MODEL, "--port", str(self.port)),
                *("--ops-port", str(self.ops_port), "--parallel", "2", "--ctx-size", "1024", "--threads", "1"),
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **env, "MODELYARD_DATA_DIR": str(data_dir)},
            preexec_fn=kill_with_parent,
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = 180.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"engine exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if httpx.get(f"http://127.0.0.1:{self.ops_port}/ready", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"engine not ready after {timeout} s:\n{self.log()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-6000:]


@dataclass
class Fleet:
    gateways: list[GatewayProcess]
    engines: list[EngineProcess]
    admin_key: str
    database_url: str

    def admin(self, gateway: GatewayProcess) -> httpx.Client:
        return httpx.Client(base_url=gateway.url, headers={"authorization": f"Bearer {self.admin_key}"}, timeout=60)

    def lease_holder(self, name: str = "batches") -> GatewayProcess | None:
        """The live gateway holding the lease ``name`` (``batches``: the Batch API's runner; ``rollouts``: the
        rollout controller), if any."""
        database = Database(self.database_url)
        try:
            state = Leases(database).read(name)
        finally:
            database.dispose()
        if state is None or not state.holder:
            return None
        pid = int(state.holder.split(":")[1])
        return next((g for g in self.gateways if g.proc.pid == pid and g.proc.poll() is None), None)


@pytest.fixture(scope="module")
def fleet(
    tmp_path_factory: pytest.TempPathFactory, engine_build: EngineBuild, default_model_path: Path
) -> Iterator[Fleet]:
    schema = f"modelyard_test_{uuid.uuid4().hex[:12]}"
    owner = Database(POSTGRES_URL)
    with owner.engine.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    root = tmp_path_factory.mktemp("fleet")
    url = postgres_schema_url(schema)
    database = open_database(url)  # what an init Job does before the Deployments start: migrate, register
    checker = IntegrityChecker(root / "integrity")
    ensure_default_registered(registry_store(database), checker, default_model_path, "test")
    database.dispose()
    admin_key = "my-" + secrets.token_urlsafe(32)
    prefix = f"modelyard-test-{uuid.uuid4().hex[:8]}"
    env = {
        "MODELYARD_AUTH": "on",
        "MODELYARD_DATABASE_URL": url,
        "MODELYARD_ADMIN_KEY": admin_key,
        "MODELYARD_KEY_PEPPER": secrets.token_hex(16),
        "MODELYARD_REDIS_URL": REDIS_URL,
        "MODELYARD_REDIS_PREFIX": prefix,
    }
    engines = [EngineProcess(root / f"engine{i}", env) for i in range(2)]
    gateways: list[GatewayProcess] = []
    try:
        for engine in engines:
            engine.wait_ready()
        # The first engine by DNS name (localhost's A/AAAA records: the IPv6 one, if any, fails its health check
        # and is skipped), the second by a static URL.
        targets = f"{MODEL}:1=dns+http://localhost:{engines[0].port},{engines[1].url}"
        args = ("--engine-url", targets, "--discovery-interval", "0.5", "--engine-slots", "2", "--shutdown-grace", "20")
        gateways = [GatewayProcess(root / f"gw{i}", *args, env=env, command="gateway") for i in range(3)]
        for gateway in gateways:
            gateway.wait_ready()
        yield Fleet(gateways, engines, admin_key, url)
    finally:
        for gateway in gateways:
            gateway.stop()
        for engine in engines:
            engine.stop()
        with owner.engine.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        owner.dispose()
        _drop_redis_prefix(prefix)


def _drop_redis_prefix(prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        for key in client.scan_iter(f"{prefix}:*"):
            client.delete(key)
    finally:
        client.close()


def test_engines_serve_health_readiness_and_metrics_and_every_gateway_balances_over_both(fleet: Fleet) -> None:
    engine = fleet.engines[0]
    ops = f"http://127.0.0.1:{engine.ops_port}"
    assert httpx.get(f"{ops}/health", timeout=5).json()["status"] == "alive"
    assert httpx.get(f"{ops}/ready", timeout=5).json() == {"ready": True, "state": "ready", "model": f"{MODEL}:1"}
    metrics = httpx.get(f"{ops}/metrics", timeout=5).text
    assert f'modelyard_engine_ready{{engine="{MODEL}:1",model="{MODEL}",version="1"}} 1' in metrics
    assert "modelyard_engine_llamacpp_n_busy_slots_per_decode{" in metrics  # llama-server's own, relabelled
    for gateway in fleet.gateways:
        with fleet.admin(gateway) as api:
            described = api.get("/ready").json()
            engines = {e["base_url"] for e in described["engines"] if e["ready"]}
            assert {fleet.engines[0].url, fleet.engines[1].url} <= engines, described  # the first one found by DNS
            answers = [api.post("/v1/completions", json=COMPLETION) for _ in range(4)]
            assert [a.status_code for a in answers] == [200] * 4, answers[0].text


def test_a_deployments_change_through_one_gateway_is_in_effect_on_the_others_within_a_second(fleet: Fleet) -> None:
    config = f"routes:\n  assistant:\n    targets:\n      main: {{model: '{MODEL}@production'}}\n"
    with fleet.admin(fleet.gateways[0]) as api:
        put = api.put("/admin/deployments", content=config)
    assert put.status_code == 200, put.text
    applied = put.json()["applied_at"]  # when the replica that took the change applied it (its wall clock)
    seen: dict[int, float] = {}
    clients = [fleet.admin(g) for g in fleet.gateways[1:]]
    deadline = time.monotonic() + 10
    while len(seen) < len(clients) and time.monotonic() < deadline:
        for index, client in enumerate(clients):
            status = client.get("/admin/deployments").json()
            if index not in seen and "assistant" in status["routes"]:
                seen[index] = status["applied_at"] - applied  # when each other replica swapped its catalog
    print(f"\ndeployments change in effect on the other gateways after {sorted(seen.values())} s")
    assert len(seen) == 2 and max(seen.values()) < 1.0, seen
    answer = clients[1].post("/v1/completions", json={**COMPLETION, "model": "assistant"})
    assert answer.status_code == 200, answer.text
    for client in clients:
        client.close()


def test_rate_limits_hold_exactly_across_three_gateways(fleet: Fleet) -> None:
    with fleet.admin(fleet.gateways[0]) as api:
        answer = api.post("/admin/keys", json={"name": "burst", "scopes": ["inference"], "limits": {"rpm": 6}})
    assert answer.status_code == 201, answer.text
    key = answer.json()["key"]
    time.sleep(1.0)  # every replica's key snapshot has it
    n = 18
    barrier = threading.Barrier(n)

    def one(i: int) -> int:
        gateway = fleet.gateways[i % 3]
        with httpx.Client(base_url=gateway.url, timeout=300, headers={"authorization": f"Bearer {key}"}) as client:
            assert client.get("/v1/models").status_code == 200
            barrier.wait(timeout=60)
            return client.post("/v1/completions", json=COMPLETION).status_code

    with ThreadPoolExecutor(n) as pool:
        statuses = sorted(pool.map(one, range(n)))
    print(f"\nrpm=6, 18 at once over 3 gateways: {statuses.count(200)} x 200, {statuses.count(429)} x 429")
    assert statuses.count(200) == 6 and statuses.count(429) == 12, statuses


def test_a_gateway_stopped_under_load_finishes_every_request_it_accepted(fleet: Fleet) -> None:
    holder = fleet.lease_holder()
    victim = next(g for g in fleet.gateways if g is not holder)
    survivors = [g for g in fleet.gateways if g is not victim]
    body = {**COMPLETION, "max_tokens": 24}
    statuses: list[int] = []
    errors: list[str] = []
    started = threading.Barrier(7)

    def in_flight() -> None:
        with fleet.admin(victim) as api:
            started.wait(timeout=60)
            try:
                statuses.append(api.post("/v1/completions", json=body).status_code)
            except httpx.HTTPError as exc:
                errors.append(repr(exc))

    threads = [threading.Thread(target=in_flight) for _ in range(6)]
    for thread in threads:
        thread.start()
    started.wait(timeout=60)
    time.sleep(0.5)  # the requests are in the gateway, waiting for the engines
    victim.signal(signal.SIGTERM)
    with fleet.admin(survivors[0]) as api:  # the others keep serving meanwhile
        assert api.post("/v1/completions", json=COMPLETION).status_code == 200
    for thread in threads:
        thread.join(120)
    assert victim.proc.wait(60) == 0, victim.log()
    assert errors == [] and statuses == [200] * 6, (statuses, errors, victim.log())


def test_the_lease_holder_killed_another_gateway_takes_its_jobs_and_the_rest_keep_serving(fleet: Fleet) -> None:
    holder = fleet.lease_holder()
    assert holder is not None
    controller = fleet.lease_holder("rollouts")
    assert controller is not None  # the rollout controller runs on one gateway replica too
    survivor = next(g for g in fleet.gateways if g is not holder and g.proc.poll() is None)
    holder.proc.kill()
    holder.proc.wait()
    killed = time.monotonic()
    with fleet.admin(survivor) as api:
        answers = [api.post("/v1/completions", json=COMPLETION).status_code for _ in range(3)]
    assert answers == [200] * 3
    while fleet.lease_holder() is not survivor and time.monotonic() - killed < 15:
        time.sleep(0.2)
    took = time.monotonic() - killed
    print(f"\nthe lease moved to the surviving gateway {took:.1f} s after its holder was killed")
    assert fleet.lease_holder() is survivor and took < 10
    while fleet.lease_holder("rollouts") is None and time.monotonic() - killed < 15:
        time.sleep(0.2)  # wherever the controller was, a live gateway holds its lease now
    assert fleet.lease_holder("rollouts") is not None
