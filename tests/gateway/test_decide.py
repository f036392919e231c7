"""The decide stage in-process (gateway/decide.py over routing/decide.py): weighted canaries, sticky A/B, the
small/large router and regions, measured from what the answers say (``x-modelyard-target``)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from inprocess import chat, serving
from load import drive_client
from mock_upstreams import MockUpstream


def test_weighted_canary_split_and_transparency_headers(mocks: Callable[..., MockUpstream]) -> None:
    stable, canary = mocks(), mocks()
    config = f"""
routes:
  chat:
    targets:
      stable: {{url: "{stable.url}", weight: 90}}
      canary: {{url: "{canary.url}", weight: 10}}
"""

    async def scenario() -> None:
        async with serving(deployments=config) as gateway:
            result = await drive_client(gateway.client, 10_000, lambda i: chat("chat"), concurrency=48)
            assert result.failed == 0, result.errors + result.error_bodies
            share = result.targets["canary"] / 10_000
            assert abs(share - 0.10) <= 0.02, result.targets
            response = await gateway.client.post("/v1/chat/completions", json=chat("chat"))
            assert response.headers["x-modelyard-route"] == "chat"
            assert response.headers["x-modelyard-target"] in ("stable", "canary")
            assert response.headers["x-modelyard-attempts"] == "1"
            assert response.headers["x-modelyard-model-version"] == "chat"  # a remote target: its model name

    asyncio.run(scenario())


def test_sticky_ab_keeps_each_user_on_one_variant_also_after_a_reload(mocks: Callable[..., MockUpstream]) -> None:
    a, b = mocks(), mocks()
    config = f"""
routes:
  ab:
    targets:
      a: {{url: "{a.url}", weight: 50}}
      b: {{url: "{b.url}", weight: 50}}
    sticky: {{key: "header:x-user-id"}}
"""

    def user(i: int) -> str:
        return f"user-{i % 300}"

    async def scenario() -> None:
        async with serving(deployments=config) as gateway:
            result = await drive_client(
                gateway.client, 1500, lambda i: chat("ab"), headers=lambda i: {"x-user-id": user(i)}, key=user
            )
            assert result.failed == 0
            assert all(len(targets) == 1 for targets in result.by_key.values())
            on_a = sum(1 for targets in result.by_key.values() if targets == {"a"})
            assert 100 < on_a < 200  # 300 users split about evenly
            # the `user` field works the same way, and the same key gives the same answer after a reload
            gateway.apply(config.replace('"header:x-user-id"', "user"))
            first = await drive_client(
                gateway.client, 200, lambda i: chat("ab", user=f"u{i % 20}"), key=lambda i: f"u{i % 20}"
            )
            gateway.apply(config.replace('"header:x-user-id"', "user"))
            again = await drive_client(
                gateway.client, 200, lambda i: chat("ab", user=f"u{i % 20}"), key=lambda i: f"u{i % 20}"
            )
            assert all(len(t) == 1 for t in first.by_key.values())
            assert first.by_key == again.by_key

    asyncio.run(scenario())


def test_small_large_router_decision_is_visible(mocks: Callable[..., MockUpstream]) -> None:
    small, large = mocks(), mocks()
    config = f"""
routes:
  auto:
    targets:
      small: {{url: "{small.url}"}}
      large: {{url: "{large.url}"}}
    router: {{small: small, large: large, threshold: 0.3}}
"""
    hard_prompt = (
        "Explain step by step why this is O(n^2) and prove it:\n```python\nfor i in a:\n  for j in a:\n    f(i, j)\n```"
    )

    async def scenario() -> None:
        async with serving(deployments=config) as gateway:
            easy = await gateway.client.post("/v1/chat/completions", json=chat("auto", "Hello!"))
            hard = await gateway.client.post("/v1/chat/completions", json=chat("auto", hard_prompt))
            assert easy.headers["x-modelyard-target"] == "small"
            assert easy.headers["x-modelyard-router"].startswith("small;")
            assert hard.headers["x-modelyard-target"] == "large"
            assert hard.headers["x-modelyard-router"].startswith("large;")
            assert gateway.metric("modelyard_router_decisions_total", choice="large", route="auto") == 1

    asyncio.run(scenario())


def test_regions_narrow_the_targets_and_a_region_with_none_is_a_clear_400(mocks: Callable[..., MockUpstream]) -> None:
    eu, us = mocks(), mocks()
    config = f"""
routes:
  geo:
    targets:
      eu: {{url: "{eu.url}", region: eu-west}}
      us: {{url: "{us.url}", region: us-east}}
"""

    async def scenario() -> None:
        async with serving(deployments=config) as gateway:
            for _ in range(20):
                response = await gateway.client.post(
                    "/v1/chat/completions", json=chat("geo"), headers={"x-modelyard-region": "eu-west"}
                )
                assert response.headers["x-modelyard-target"] == "eu"
            nowhere = await gateway.client.post(
                "/v1/chat/completions", json=chat("geo"), headers={"x-modelyard-region": "ap-south"}
            )
            assert nowhere.status_code == 400
            error = nowhere.json()["error"]
            assert error["code"] == "no_target_in_region" and error["param"] == "x-modelyard-region"
            assert "eu-west, us-east" in error["message"]

    asyncio.run(scenario())
