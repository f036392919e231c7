from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway_process import GatewayProcess


@pytest.fixture(scope="module")
def routing_gateway(
    tmp_path_factory: pytest.TempPathFactory, engine_build: object, default_model_path: Path
) -> Iterator[GatewayProcess]:
    """One gateway (with its default engine) whose deployments each test replaces through the admin API."""
    data = tmp_path_factory.mktemp("routing")
    config = data / "deployments.yaml"
    config.write_text("routes: {}\n")
    process = GatewayProcess(data, "--config", str(config), "--parallel", "2", "--ctx-size", "2048")
    try:
        process.wait_ready()
        yield process
    finally:
        process.stop()
