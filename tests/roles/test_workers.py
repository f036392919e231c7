"""``--workers N``: several gateway processes on one port (SO_REUSEPORT). In front of mock upstreams for what is
about the workers themselves (connections spread, metrics that add up whichever worker answers, every worker
drained on SIGTERM); one real ``serve --workers 2`` for what is about the control process (one engine, not two)."""

from __future__ import annotations

import glob
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families

from mock_upstreams import MockUpstream

from conftest import MODEL
from gateway_process import GatewayProcess

pytestmark = pytest.mark.slow

CHAT = {"model": "live", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}


def _requests_total(text: str) -> float:
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "modelyard_requests_total"
    )


def _in_flight(gateway: GatewayProcess) -> float:
    text = httpx.get(f"{gateway.url}/metrics", timeout=10).text
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "modelyard_requests_in_flight"
    )


def _workers(gateway: GatewayProcess) -> list[psutil.Process]:
    """The worker processes (spawned by multiprocessing; its resource tracker is not one)."""
    return [p for p in psutil.Process(gateway.proc.pid).children() if "spawn_main" in " ".join(p.cmdline())]


def test_workers_share_the_port_count_each_request_once_and_all_drain_on_sigterm(
    tmp_path: Path, mocks: Callable[..., MockUpstream]
) -> None:
    slow = mocks("--latency-ms", "1500")
    config = tmp_path / "deployments.yaml"
    config.write_text(f"routes:\n  live:\n    targets:\n      one: {{url: '{mocks().url}'}}\n"
                      f"  slow:\n    targets:\n      one: {{url: '{slow.url}'}}\n")  # fmt: skip
    env = {"MODELYARD_DATABASE_URL": f"sqlite:///{tmp_path / 'modelyard.db'}"}
    gateway = GatewayProcess(tmp_path, "--workers", "2", "--config", str(config), env=env, command="gateway")
    try:
        gateway.wait_ready(120)
        assert len(_workers(gateway)) == 2
        for _ in range(40):  # a new connection each: the kernel spreads connections, not requests
            assert httpx.post(f"{gateway.url}/v1/chat/completions", json=CHAT, timeout=30).status_code == 200
        own = []
        for path in glob.glob(f"/tmp/modelyard-{gateway.port}-*/worker-*.sock"):
            transport = httpx.HTTPTransport(uds=path)
            with httpx.Client(transport=transport, base_url="http://worker") as client:
                own.append(_requests_total(client.get("/metrics").text))
        assert len(own) == 2 and all(count > 0 for count in own) and sum(own) == 40, own  # both served
        for _ in range(4):  # whichever worker answers the scrape, it counts every request once
            assert _requests_total(httpx.get(f"{gateway.url}/metrics", timeout=10).text) == 40

        statuses: list[int] = []

        def in_flight() -> None:
            body = {**CHAT, "model": "slow"}
            statuses.append(httpx.post(f"{gateway.url}/v1/chat/completions", json=body, timeout=60).status_code)

        threads = [threading.Thread(target=in_flight) for _ in range(8)]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 30
        while _in_flight(gateway) < 8 and time.monotonic() < deadline:  # waiting on the slow upstream, over both
            time.sleep(0.05)
        workers = _workers(gateway)
        gateway.signal(signal.SIGTERM)
        for thread in threads:
            thread.join(60)
        assert statuses == [200] * 8
        assert gateway.proc.wait(60) == 0, gateway.log()
        assert not any(w.is_running() and w.status() != psutil.STATUS_ZOMBIE for w in workers)
    finally:
        gateway.stop()


@pytest.mark.engine
def test_serve_with_two_workers_runs_one_engine_and_serves_through_both(
    start_gateway: Callable[..., GatewayProcess],
) -> None:
    gateway = start_gateway("--workers", "2", "--parallel", "2", "--ctx-size", "2048")
    assert len(gateway.engine_processes()) == 1  # owned by the control process, not by each worker
    assert len(_workers(gateway)) == 2
    body = {"model": MODEL, "prompt": "Hi", "max_tokens": 1}
    for _ in range(6):
        assert httpx.post(f"{gateway.url}/v1/completions", json=body, timeout=120).status_code == 200
    text = httpx.get(f"{gateway.url}/metrics", timeout=10).text
    assert _requests_total(text) == 6
    assert "modelyard_engine_llamacpp_" in text  # the engine's own metrics, from the control process
