"""Shadow traffic in-process (gateway/shadow.py): the copy never slows or fails the primary, goes through the same
upstream call as every request, and is compared and stored next to its primary."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from inprocess import chat, serving
from load import drive_client
from mock_upstreams import MockUpstream
from modelyard.observability.request_log_store import RequestLogStore
from modelyard.observability.request_query import build_query
from modelyard.roles.stores import open_database


def test_shadow_never_slows_or_fails_the_primary_and_is_recorded(
    mocks: Callable[..., MockUpstream], tmp_path: Path
) -> None:
    primary, slow = mocks(), mocks("--latency-ms", "2500")
    gone = MockUpstream()
    gone.stop()  # nothing listens there any more: every shadow call is refused
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
      broken: {{url: "{gone.url}", weight: 0}}
    shadow: {{target: broken}}
"""
    db = tmp_path / "requests.db"

    async def scenario() -> None:
        async with serving(deployments=config, request_log=db) as gateway:
            slow_result = await drive_client(gateway.client, 40, lambda i: chat("mirrored"), concurrency=8)
            failing_result = await drive_client(gateway.client, 40, lambda i: chat("mirrored-failing"), concurrency=8)
            assert slow_result.failed == 0 and failing_result.failed == 0
            assert slow_result.targets == {"live": 40} and failing_result.targets == {"live": 40}
            assert max(slow_result.latencies) < 1.0  # the shadow takes 2.5 s; the primary never waits for it
            for _ in range(100):
                if gateway.metric("modelyard_shadow_comparisons_total", route="mirrored") >= 40:
                    break
                await asyncio.sleep(0.2)
            assert gateway.metric("modelyard_shadow_comparisons_total", match="exact", route="mirrored") == 40
            failing = gateway.metric("modelyard_shadow_requests_total", route="mirrored-failing")
            assert failing == 40
            # every copy failed (connection refused) or was skipped while 8 were in flight; none reached a client
            assert gateway.metric("modelyard_shadow_requests_total", outcome="ok", route="mirrored-failing") == 0
            assert gateway.metric("modelyard_shadow_requests_total", outcome="error", route="mirrored-failing") > 0
            # shadow calls count in flight and leave nothing behind
            assert all(r.upstream.active_requests == 0 for r in gateway.runtime.catalog().replicas())

    asyncio.run(asyncio.wait_for(scenario(), 120))
    pairs = RequestLogStore(open_database(f"sqlite:///{db}")).shadow_pairs(
        build_query({"route": "mirrored", "limit": "100"})
    )
    assert len(pairs) == 40
    pair = pairs[0]
    assert pair["primary"]["status"] == 200 and pair["shadow"]["status"] == 200
    assert pair["shadow"]["outputs_match"] is True  # the mock answers the same text
    assert pair["shadow"]["duration_ms"] > 2000 > pair["primary"]["duration_ms"]
    assert pair["shadow"]["completion_tokens"] == pair["primary"]["completion_tokens"]
    env = {**os.environ, "MODELYARD_DATABASE_URL": f"sqlite:///{db}", "MODELYARD_DATA_DIR": str(tmp_path)}
    command = [sys.executable, "-m", "modelyard", "requests", "shadow", "--route", "mirrored", "--json"]
    listed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0, listed.stderr
    assert len(json.loads(listed.stdout)) == 40
