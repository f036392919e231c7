"""Admission to engine slots (gateway/slots.py): the fair gate on its own, then through the pipeline in front of a
mock upstream with a concurrency limit — queueing, fairness between keys, priority, cancellation, the bound."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from inprocess import chat, raw_call, serving
from mock_upstreams import MockUpstream
from modelyard.gateway.settings import GatewaySettings
from modelyard.gateway.slots import BATCH, INTERACTIVE, FairGate, QueueFull, priority_of


def test_the_gate_serves_keys_fairly_and_interactive_before_batch() -> None:
    async def scenario() -> list[str]:
        gate = FairGate(limit=1, max_waiting=100)
        assert gate.try_enter()
        order: list[str] = []

        async def request(key: str, priority: int = INTERACTIVE) -> None:
            await gate.enter(key, priority, 1)
            order.append(key)
            gate.leave()

        # the heavy key queues ten, then the light key two, then a batch request; one slot, held by the test
        tasks = [asyncio.create_task(request("heavy")) for _ in range(10)]
        await asyncio.sleep(0)
        tasks += [asyncio.create_task(request("light")) for _ in range(2)]
        tasks.append(asyncio.create_task(request("nightly", BATCH)))
        await asyncio.sleep(0)
        assert gate.waiting == 13
        gate.leave()
        await asyncio.gather(*tasks)
        assert gate.in_use == 0 and gate.waiting == 0
        return order

    order = asyncio.run(scenario())
    assert order.index("light") <= 1  # not behind the heavy key's backlog
    assert order[:4].count("light") == 2
    assert order[-1] == "nightly"


def test_a_cancelled_wait_leaves_the_queue_and_a_full_queue_refuses() -> None:
    async def scenario() -> None:
        gate = FairGate(limit=1, max_waiting=2)
        assert gate.try_enter()
        first = asyncio.create_task(gate.enter("a", INTERACTIVE, 1))
        second = asyncio.create_task(gate.enter("b", INTERACTIVE, 1))
        await asyncio.sleep(0)
        try:
            await gate.enter("c", INTERACTIVE, 7)
        except QueueFull as full:
            assert full.waiting == 2 and full.retry_after_s == 7
        else:
            raise AssertionError("a third waiter fits in a queue of two")
        first.cancel()
        await asyncio.sleep(0)
        assert gate.waiting == 1
        gate.leave()  # goes to the second waiter, not the cancelled first
        await second
        assert gate.in_use == 1 and gate.waiting == 0
        gate.leave()
        assert gate.in_use == 0

    asyncio.run(scenario())


def test_a_request_asks_for_a_class_within_what_its_key_allows() -> None:
    assert priority_of(None, "interactive") == INTERACTIVE
    assert priority_of(b"batch", "interactive") == BATCH
    assert priority_of(b"interactive", "batch") == BATCH  # a batch key cannot jump the queue
    assert priority_of(b"nonsense", "") == INTERACTIVE


def test_requests_beyond_the_slots_wait_in_the_gateway_are_measured_and_bounded(
    mocks: Callable[..., MockUpstream],
) -> None:
    mock = mocks("--latency-ms", "300")
    routes = f"""
routes:
  m:
    targets:
      only: {{url: "{mock.url}", max_concurrency: 2}}
"""

    async def scenario() -> None:
        async with serving(deployments=routes) as gateway:
            (replica,) = gateway.runtime.catalog().replicas()
            calls = [asyncio.create_task(gateway.client.post("/v1/chat/completions", json=chat("m"))) for _ in range(6)]
            await asyncio.sleep(0.15)
            assert replica.upstream.active_requests == 2  # the engine sees its slots' worth, no more
            assert gateway.metric("modelyard_queue_depth", route="m") == 4
            answers = await asyncio.gather(*calls)
            assert [a.status_code for a in answers] == [200] * 6
            assert gateway.metric("modelyard_queue_depth", route="m") == 0
            assert gateway.metric("modelyard_queue_wait_seconds_count", route="m") == 4
            assert gateway.metric("modelyard_queue_wait_seconds_sum", route="m") > 0.5
            # a client that leaves while queued is gone from the queue at once
            blockers = [
                asyncio.create_task(gateway.client.post("/v1/chat/completions", json=chat("m"))) for _ in range(2)
            ]
            await asyncio.sleep(0.05)
            left = await raw_call(
                gateway.runtime.app, "POST", "/v1/chat/completions", chat("m"), disconnect_after_s=0.1
            )
            assert left.status == 0
            assert gateway.metric("modelyard_queue_depth", route="m") == 0
            await asyncio.gather(*blockers)

    asyncio.run(asyncio.wait_for(scenario(), 60))


def test_a_full_queue_answers_429_queue_full_with_retry_after(mocks: Callable[..., MockUpstream]) -> None:
    mock = mocks("--latency-ms", "300")
    routes = f"""
routes:
  m:
    targets:
      only: {{url: "{mock.url}", max_concurrency: 1}}
"""

    async def scenario() -> None:
        settings = GatewaySettings(max_body_bytes=65536, queue_max=1)
        async with serving(deployments=routes, gateway_settings=settings) as gateway:
            calls = [asyncio.create_task(gateway.client.post("/v1/chat/completions", json=chat("m"))) for _ in range(3)]
            answers = await asyncio.gather(*calls)
            statuses = sorted(a.status_code for a in answers)
            assert statuses == [200, 200, 429]
            refused = next(a for a in answers if a.status_code == 429)
            assert refused.json()["error"]["code"] == "queue_full"
            assert int(refused.headers["retry-after"]) >= 1
            assert gateway.metric("modelyard_queue_rejected_total", route="m") == 1

    asyncio.run(asyncio.wait_for(scenario(), 60))
