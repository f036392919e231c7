"""Two gateway replicas sharing one PostgreSQL schema and one Redis (unique key prefix), with keys required."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from modelyard.engines.llamacpp_build import EngineBuild
from modelyard.store.database import Database

from conftest import POSTGRES_URL, postgres_schema_url
from gateway_process import GatewayProcess

REDIS_URL = os.environ.get("MODELYARD_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


class Replicas:
    def __init__(self, a: GatewayProcess, b: GatewayProcess, admin_key: str, env: dict[str, str]) -> None:
        self.a, self.b = a, b
        self.admin_key = admin_key
        self.env = env  # what the CLI needs to reach the same database with the same pepper
        self.database_url = env["MODELYARD_DATABASE_URL"]

    def client(self, gateway: GatewayProcess, key: str | None, timeout: float = 120) -> httpx.Client:
        headers = {"authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=gateway.url, headers=headers, timeout=timeout)

    def admin(self, gateway: GatewayProcess | None = None) -> httpx.Client:
        return self.client(gateway or self.a, self.admin_key)

    def create_key(self, **body: object) -> tuple[str, str]:
        with self.admin() as api:
            answer = api.post("/admin/keys", json={"name": f"t-{uuid.uuid4().hex[:6]}", **body})
        assert answer.status_code == 201, answer.text
        return answer.json()["id"], answer.json()["key"]

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "modelyard", *args],
            env={**os.environ, **self.env},
            capture_output=True,
            text=True,
            timeout=120,
        )

    def sql(self, statement: str) -> None:
        database = Database(self.database_url)
        try:
            with database.engine.begin() as connection:
                connection.execute(text(statement))
        finally:
            database.dispose()


@pytest.fixture(scope="package")
def replicas(
    tmp_path_factory: pytest.TempPathFactory, engine_build: EngineBuild, default_model_path: Path
) -> Iterator[Replicas]:
    schema = f"modelyard_test_{uuid.uuid4().hex[:12]}"
    owner = Database(POSTGRES_URL)
    with owner.engine.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    admin_key = "my-" + secrets.token_urlsafe(32)
    prefix = f"modelyard-test-{uuid.uuid4().hex[:8]}"
    env = {
        "MODELYARD_AUTH": "on",
        "MODELYARD_DATABASE_URL": postgres_schema_url(schema),
        "MODELYARD_ADMIN_KEY": admin_key,
        "MODELYARD_KEY_PEPPER": secrets.token_hex(16),
        "MODELYARD_REDIS_URL": REDIS_URL,
        "MODELYARD_REDIS_PREFIX": prefix,
    }
    root = tmp_path_factory.mktemp("replicas")
    args = ("--parallel", "4", "--ctx-size", "4096")
    a = GatewayProcess(root / "a", *args, env=env)
    b = GatewayProcess(root / "b", *args, env=env)
    try:
        a.wait_ready()
        b.wait_ready()
        yield Replicas(a, b, admin_key, {**env, "MODELYARD_DATA_DIR": str(root / "cli")})
    finally:
        a.stop()
        b.stop()
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
