from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from mock_upstreams import MockUpstream
from modelyard import paths
from modelyard.engines.llamacpp_build import EngineBuild, ensure_engine
from modelyard.registry.default_model import ensure_default_model
from modelyard.store.database import Database

from gateway_process import GatewayProcess

MODEL = "gemma-3-270m"
MODEL_V1 = f"{MODEL}:1"  # what responses name: the concrete version that answered


@pytest.fixture(scope="session")
def engine_build() -> EngineBuild:
    """The cached llama.cpp build (``make test`` builds it first; this reuses it)."""
    return ensure_engine(paths.cache_dir())


@pytest.fixture(scope="session")
def default_model_path() -> Path:
    return ensure_default_model(paths.cache_dir())


@pytest.fixture(scope="session")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, engine_build: EngineBuild, default_model_path: Path
) -> Iterator[GatewayProcess]:
    """One shared real gateway + llama-server + default model for the read-only end-to-end tests."""
    process = GatewayProcess(
        tmp_path_factory.mktemp("gateway"), "--max-body-bytes", "65536", "--parallel", "4", "--ctx-size", "8192"
    )
    try:
        process.wait_ready()
        yield process
    finally:
        process.stop()


@pytest.fixture
def start_gateway(
    tmp_path: Path, engine_build: EngineBuild, default_model_path: Path
) -> Iterator[Callable[..., GatewayProcess]]:
    """Start private gateways for tests that stop, kill or signal them; every one is stopped at teardown,
    including when the test fails halfway."""
    started: list[GatewayProcess] = []

    def start(*args: str, env: dict[str, str] | None = None) -> GatewayProcess:
        process = GatewayProcess(tmp_path / f"gw{len(started)}", *args, env=env)
        started.append(process)
        process.wait_ready()
        return process

    yield start
    for process in started:
        process.stop()


POSTGRES_URL = os.environ.get("MODELYARD_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


def postgres_schema_url(schema: str) -> str:
    return f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"


@pytest.fixture
def postgres_schema() -> Iterator[str]:
    """A private schema in the shared ``test`` database, dropped afterwards (so runs never see each other)."""
    schema = f"modelyard_test_{uuid.uuid4().hex[:12]}"
    admin = Database(POSTGRES_URL)
    with admin.engine.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield schema
    finally:
        with admin.engine.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(scope="session")
def q2k_model_path(engine_build: EngineBuild, default_model_path: Path) -> Path:
    """The default model re-quantized to Q2_K (made once, kept in the cache dir next to the default model)."""
    from modelyard.registry.quantize import requantize

    path = paths.cache_dir() / "test-artifacts" / "gemma-3-270m-Q2_K.gguf"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
        requantize(engine_build.binary("llama-quantize"), default_model_path, partial, "Q2_K", threads=os.cpu_count())
        partial.replace(path)
    return path


@pytest.fixture
def mocks() -> Iterator[Callable[..., MockUpstream]]:
    """Start fake OpenAI-compatible upstreams (``bench/mock_upstream.py``); all are stopped at teardown."""
    started: list[MockUpstream] = []

    def start(*args: str, port: int | None = None) -> MockUpstream:
        mock = MockUpstream(*args, port=port)
        started.append(mock)
        return mock

    yield start
    for mock in started:
        mock.stop()
