"""The routing layer end to end through a real gateway, against fake upstreams where the point is the gateway
(weights, stickiness, shadow, retries, ejection, hot reload); real engines are in test_real_engines.py."""

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


def test_weighted_canary_split_and_transparency_headers(
    routing_gateway: GatewayProcess, mocks: Callable[..., MockUpstream]
) -> None:
    stable, canary = mocks(), mocks()
    config = f"""
routes:
  chat:
    targets:
      stable: {{url: "{stable.url}", weight: 90}}
      canary: {{url: "{canary.url}", weight: 10}}
"""
    assert apply(routing_gateway.url, config).status_code == 200
    result = run(routing_gateway.url, 10_000, lambda i: chat("chat"), concurrency=48)
    assert result.failed == 0, result.errors + result.error_bodies
    share = result.targets["canary"] / 10_000
    assert abs(share - 0.10) <= 0.02, result.targets
    response = httpx.post(f"{routing_gateway.url}/v1/chat/completions", json=chat("chat"), timeout=30)
    assert response.headers["x-modelyard-route"] == "chat"
    assert response.headers["x-modelyard-target"] in ("stable", "canary")
    assert response.headers["x-modelyard-attempts"] == "1"
    assert response.headers["x-modelyard-model-version"] == "chat"  # a remote target: its model name


def test_sticky_ab_keeps_each_user_on_one_variant(
    routing_gateway: GatewayProcess, mocks: Callable[..., MockUpstream]
) -> None:
    a, b = mocks(), mocks()
    config = f"""
routes:
  ab:
    targets:
      a: {{url: "{a.url}", weight: 50}}
      b: {{url: "{b.url}", weight: 50}}
    sticky: {{key: "header:x-user-id"}}
"""
    assert apply(routing_gateway.url, config).status_code == 200
    user = lambda i: f"user-{i % 300}"  # noqa: E731
    result = run(routing_gateway.url, 1500, lambda i: chat("ab"), headers=lambda i: {"x-user-id": user(i)}, key=user)
    assert result.failed == 0
    assert all(len(targets) == 1 for targets in result.by_key.values())
    on_a = sum(1 for targets in result.by_key.values() if targets == {"a"})
    assert 100 < on_a < 200  # 300 users split about evenly
    # the `user` field works the same way, and the same key gives the same answer after a reload
    config_user = config.replace('"header:x-user-id"', "user")
    assert apply(routing_gateway.url, config_user).status_code == 200
    first = run(routing_gateway.url, 200, lambda i: chat("ab", user=f"u{i % 20}"), key=lambda i: f"u{i % 20}")
    assert all(len(t) == 1 for t in first.by_key.values())


def test_shadow_never_slows_or_fails_the_primary_and_is_recorded(
    routing_gateway: GatewayProcess, mocks: Callable[..., MockUpstream]
) -> None:
    primary, slow = mocks(), mocks("--latency-ms", "2500")
    gone = MockUpstream()
    gone.stop()  # nothing listens there any more: every shadow call is refused
    dead = gone.url
    config = f"""
routes:
  mirrored:
    targets:
      live: {{url: "{primary.url}"}}
      slow: {{url: "{slow.url}", weight: 0}}
    shadow: {{target: slow, timeout_s: 10, max_concurrent: 64}}
  mirrored-failing:
    targets:
      live: {{url: "{primary.url}"}}
      broken: {{url: "{dead}", weight: 0}}
    shadow: {{target: broken}}
"""
    assert apply(routing_gateway.url, config).status_code == 200
    slow_result = run(routing_gateway.url, 40, lambda i: chat("mirrored"), concurrency=8)
    failing_result = run(routing_gateway.url, 40, lambda i: chat("mirrored-failing"), concurrency=8)
    assert slow_result.failed == 0 and failing_result.failed == 0
    assert slow_result.targets == {"live": 40} and failing_result.targets == {"live": 40}
    assert max(slow_result.latencies) < 1.0  # the shadow takes 2.5 s; the primary never waits for it
    deadline = time.monotonic() + 20
    pairs: list[dict] = []
    while time.monotonic() < deadline:
        pairs = httpx.get(f"{routing_gateway.url}/admin/shadow?route=mirrored&limit=100", timeout=10).json()["data"]
        if len(pairs) >= 40:
            break
        time.sleep(0.5)
    assert len(pairs) == 40
    pair = pairs[0]
    assert pair["primary"]["status"] == 200 and pair["shadow"]["status"] == 200
    assert pair["shadow"]["outputs_match"] is True  # the mock answers the same text
    assert pair["shadow"]["duration_ms"] > 2000 > pair["primary"]["duration_ms"]
    assert pair["shadow"]["completion_tokens"] == pair["primary"]["completion_tokens"]
    env = {**os.environ, "MODELYARD_DATA_DIR": str(routing_gateway.log_path.parent)}
    command = [sys.executable, "-m", "modelyard", "requests", "shadow", "--route", "mirrored", "--json"]
    listed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0, listed.stderr
    assert len(json.loads(listed.stdout)) == 40
    deadline = time.monotonic() + 10
    while _metric(routing_gateway, "modelyard_shadow_requests_total", route="mirrored-failing") < 40:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    # every copy failed (connection refused) or was skipped while 8 were in flight; none reached a client
    assert _metric(routing_gateway, "modelyard_shadow_requests_total", outcome="ok", route="mirrored-failing") == 0
    assert _metric(routing_gateway, "modelyard_shadow_requests_total", outcome="error", route="mirrored-failing") > 0
    assert _metric(routing_gateway, "modelyard_shadow_comparisons_total", match="exact", route="mirrored") == 40


def test_failures_before_the_first_byte_retry_then_fall_back_and_eject(
    routing_gateway: GatewayProcess, mocks: Callable[..., MockUpstream]
) -> None:
    sick, healthy, backup = mocks("--fail-status", "500"), mocks(), mocks()
    refused = MockUpstream()
    refused.stop()  # nothing listens there any more: connection refused
    config = f"""
routes:
  resilient:
    targets:
      main: {{url: ["{sick.url}", "{healthy.url}"]}}
      backup: {{url: "{backup.url}", weight: 0}}
    fallbacks: [backup]
    balancing: round_robin
    breaker: {{failures: 2, cooldown_s: 0.5}}
  dead-primary:
    targets:
      gone: {{url: "{refused.url}"}}
      backup: {{url: "{backup.url}", weight: 0}}
    fallbacks: [backup]
"""
    assert apply(routing_gateway.url, config).status_code == 200
    result = run(routing_gateway.url, 200, lambda i: chat("resilient"), concurrency=4)
    assert result.failed == 0, result.error_bodies
    assert _metric(routing_gateway, "modelyard_upstream_ejected", replica=sick.url) == 1
    assert result.attempts[1] >= 190  # once ejected, the sick replica gets no more attempts
    fallen = run(routing_gateway.url, 20, lambda i: chat("dead-primary"), concurrency=2)
    assert fallen.failed == 0 and fallen.targets == {"backup": 20}
    assert fallen.attempts[2] >= 3  # the dead target's attempt, then the backup's
    assert set(fallen.attempts) <= {1, 2}  # once ejected, the dead target is skipped without an attempt
    assert _metric(routing_gateway, "modelyard_route_fallbacks_total", from_target="gone", route="dead-primary") >= 20
    # the sick replica recovers: a probe re-admits it and it takes traffic again
    port = sick.port
    sick.stop()
    mocks(port=port)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if _metric(routing_gateway, "modelyard_upstream_ejected", replica=sick.url) == 0:
            break
        time.sleep(0.25)
    assert _metric(routing_gateway, "modelyard_upstream_ejected", replica=sick.url) == 0
    assert _metric(routing_gateway, "modelyard_upstream_readmissions_total", replica=sick.url) == 1


def test_all_attempts_failing_gives_a_clear_503(
    routing_gateway: GatewayProcess, mocks: Callable[..., MockUpstream]
) -> None:
    sick = mocks("--fail-status", "503")
    config = f"""
routes:
  doomed:
    targets:
      only: {{url: "{sick.url}"}}
    retry: {{attempts: 2}}
"""
    assert apply(routing_gateway.url, config).status_code == 200
    response = httpx.post(f"{routing_gateway.url}/v1/chat/completions", json=chat("doomed"), timeout=30)
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "engine_unavailable"
    assert response.headers["x-modelyard-attempts"] == "1"  # one replica: no second one to retry on
    assert "retry-after" in response.headers


def test_small_large_router_decision_is_visible(
    routing_gateway: GatewayProcess, mocks: Callable[..., MockUpstream]
) -> None:
    small, large = mocks(), mocks()
    config = f"""
routes:
  auto:
    targets:
      small: {{url: "{small.url}"}}
      large: {{url: "{large.url}"}}
    router: {{small: small, large: large, threshold: 0.3}}
"""
    assert apply(routing_gateway.url, config).status_code == 200
    easy = httpx.post(f"{routing_gateway.url}/v1/chat/completions", json=chat("auto", "Hello!"), timeout=30)
    hard_prompt = (
        "Explain step by step why this is O(n^2) and prove it:\n```python\nfor i in a:\n  for j in a:\n    f(i, j)\n```"
    )
    hard = httpx.post(f"{routing_gateway.url}/v1/chat/completions", json=chat("auto", hard_prompt), timeout=30)
    assert easy.headers["x-modelyard-target"] == "small" and easy.headers["x-modelyard-router"].startswith("small;")
    assert hard.headers["x-modelyard-target"] == "large" and hard.headers["x-modelyard-router"].startswith("large;")
    assert _metric(routing_gateway, "modelyard_router_decisions_total", choice="large", route="auto") == 1


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
