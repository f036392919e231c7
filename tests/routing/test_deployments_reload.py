"""Hot reload of the deployments file through a real ``modelyard serve`` process: an operator's edit and the admin
API's PUT under load, a refused file, and the audit trail. The routing policies themselves (weights, stickiness,
shadow, retries, ejection) are tested in-process in tests/gateway/; real engines are in test_real_engines.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from load import apply, chat, run
from mock_upstreams import MockUpstream

from gateway_process import GatewayProcess

pytestmark = [pytest.mark.engine, pytest.mark.slow]


def _metric(gateway: GatewayProcess, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    text = httpx.get(f"{gateway.url}/metrics", timeout=10).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    )


def test_reload_under_load_drops_nothing_and_a_bad_file_keeps_the_running_config(
    routing_gateway: GatewayProcess, mocks: Callable[..., MockUpstream], tmp_path: Path
) -> None:
    one, two = mocks(), mocks()
    config = """
routes:
  live:
    targets:
      one: {{url: "{one}", weight: {w1}}}
      two: {{url: "{two}", weight: {w2}}}
"""
    assert apply(routing_gateway.url, config.format(one=one.url, two=two.url, w1=100, w2=0)).status_code == 200
    path = Path(httpx.get(f"{routing_gateway.url}/admin/deployments", timeout=10).json()["path"])
    results = []
    thread = threading.Thread(
        target=lambda: results.append(run(routing_gateway.url, 3000, lambda i: chat("live"), concurrency=16))
    )
    thread.start()
    time.sleep(0.5)
    path.write_text(config.format(one=one.url, two=two.url, w1=0, w2=100))  # the file, as an operator edits it
    thread.join()
    result = results[0]
    assert result.failed == 0, result.errors + result.error_bodies
    assert result.targets["one"] > 0 and result.targets["two"] > 0  # the switch happened during the load
    after = run(routing_gateway.url, 50, lambda i: chat("live"))
    assert after.targets == {"two": 50}
    path.write_text("routes:\n  live:\n    targets:\n      one: {url: 'http://x', wieght: 1}\n")
    deadline = time.monotonic() + 10
    status: dict = {}
    while time.monotonic() < deadline:
        status = httpx.get(f"{routing_gateway.url}/admin/deployments", timeout=10).json()
        if status["last_error"]:
            break
        time.sleep(0.2)
    assert f"{path}: routes.live.targets.one: unknown key `wieght`" in status["last_error"]
    assert run(routing_gateway.url, 50, lambda i: chat("live")).targets == {"two": 50}  # still serving
    refused = apply(routing_gateway.url, "routes: {live: {targets: {a: {model: no-such-model}}}}")
    assert refused.status_code == 400
    error = refused.json()["error"]
    assert error["code"] == "invalid_deployments" and error["param"] == "routes.live.targets.a.model"
    assert "no registered model named 'no-such-model'" in error["message"]
    # applied changes are in the tamper-evident audit log, with the file text before and after
    env = {**os.environ, "MODELYARD_DATA_DIR": str(routing_gateway.log_path.parent)}
    audit = subprocess.run(
        [sys.executable, "-m", "modelyard", "audit", "list", "--json", "--limit", "500"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert audit.returncode == 0, audit.stderr
    actions = [record["action"] for record in json.loads(audit.stdout)]
    assert "deployments.reload" in actions and "deployments.replace" in actions
