"""The forward stage in-process (gateway/forward.py, gateway/upstream_call.py): retries on another replica, the
fallback chain, ejection and re-admission, timeouts before the first byte, and the answer when nothing works."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from inprocess import Gateway, chat, serving
from load import drive_client
from mock_upstreams import MockUpstream


def test_failures_before_the_first_byte_retry_then_fall_back_and_eject(mocks: Callable[..., MockUpstream]) -> None:
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

    async def scenario() -> None:
        async with serving(deployments=config) as gateway:
            result = await drive_client(gateway.client, 200, lambda i: chat("resilient"), concurrency=4)
            assert result.failed == 0, result.error_bodies
            assert gateway.metric("modelyard_upstream_ejected", replica=sick.url) == 1
            assert result.attempts[1] >= 190  # once ejected, the sick replica gets no more attempts
            fallen = await drive_client(gateway.client, 20, lambda i: chat("dead-primary"), concurrency=2)
            assert fallen.failed == 0 and fallen.targets == {"backup": 20}
            assert fallen.attempts[2] >= 3  # the dead target's attempt, then the backup's
            assert set(fallen.attempts) <= {1, 2}  # once ejected, the dead target is skipped without an attempt
            fallbacks = gateway.metric("modelyard_route_fallbacks_total", from_target="gone", route="dead-primary")
            assert fallbacks >= 20
            assert [r.upstream.active_requests for r in gateway.runtime.catalog().replicas()] == [0, 0, 0, 0]
            # the sick replica recovers: a probe re-admits it and it takes traffic again
            port = sick.port
            sick.stop()
            mocks(port=port)
            for _ in range(60):
                if gateway.metric("modelyard_upstream_ejected", replica=sick.url) == 0:
                    break
                await asyncio.sleep(0.25)
            assert gateway.metric("modelyard_upstream_ejected", replica=sick.url) == 0
            assert gateway.metric("modelyard_upstream_readmissions_total", replica=sick.url) == 1
            again = await drive_client(gateway.client, 20, lambda i: chat("resilient"), concurrency=1)
            assert again.failed == 0 and again.attempts == {1: 20}

    asyncio.run(asyncio.wait_for(scenario(), 120))


def test_all_attempts_failing_gives_a_clear_503(mocks: Callable[..., MockUpstream]) -> None:
    sick = mocks("--fail-status", "503")
    config = f"""
routes:
  doomed:
    targets:
      only: {{url: "{sick.url}"}}
    retry: {{attempts: 2}}
"""

    async def scenario() -> None:
        async with serving(deployments=config) as gateway:
            response = await gateway.client.post("/v1/chat/completions", json=chat("doomed"))
            assert response.status_code == 503
            assert response.json()["error"]["code"] == "engine_unavailable"
            assert response.headers["x-modelyard-attempts"] == "1"  # one replica: no second one to retry on
            assert response.headers["x-modelyard-target"] == "only"
            assert "retry-after" in response.headers

    asyncio.run(scenario())


def test_an_upstream_slower_than_the_first_byte_timeout_is_left_for_the_next_replica(
    mocks: Callable[..., MockUpstream],
) -> None:
    slow, quick = mocks("--latency-ms", "2000"), mocks()
    config = f"""
routes:
  hurried:
    targets:
      main: {{url: ["{slow.url}", "{quick.url}"]}}
    balancing: round_robin
    retry: {{attempts: 2, first_byte_timeout_s: 0.3}}
"""

    async def scenario() -> None:
        async with serving(deployments=config) as gateway:
            result = await drive_client(gateway.client, 10, lambda i: chat("hurried"), concurrency=1)
            assert result.failed == 0
            assert max(result.latencies) < 1.5  # never waited for the slow replica's 2 s
            assert gateway.metric("modelyard_route_retries_total", route="hurried") >= 1

    asyncio.run(asyncio.wait_for(scenario(), 60))


def test_an_engine_error_that_is_not_retried_is_passed_on_in_the_gateways_words(
    mocks: Callable[..., MockUpstream],
) -> None:
    rejecting = mocks("--fail-status", "400")

    async def scenario() -> None:
        async with serving({"m": [rejecting.url]}) as gateway:
            response = await gateway.client.post("/v1/chat/completions", json=chat("m"))
            assert response.status_code == 400
            assert response.json()["error"]["code"] == "engine_rejected_request"
            assert response.headers["x-modelyard-attempts"] == "1"
            replica = gateway.runtime.catalog().replicas()[0]
            assert not replica.breaker.ejected and replica.upstream.active_requests == 0

    asyncio.run(scenario())


SYSTEM_PROMPT = "You are a helpful assistant who answers in full sentences. " * 30  # ~1 800 characters, shared


def _turns(conversation: int, turns: int) -> list[dict[str, object]]:
    """The request of each turn of one conversation: every turn repeats the whole history before it."""
    messages: list[dict[str, str]] = [{"role": "system", "content": SYSTEM_PROMPT}]
    requests = []
    for turn in range(turns):
        messages.append({"role": "user", "content": f"Conversation {conversation}, question {turn}: " + "why? " * 60})
        requests.append({"model": "chat", "messages": list(messages), "max_tokens": 4})
        messages.append({"role": "assistant", "content": "Because. " * 40})
    return requests


def _replica_of(answer: dict[str, object]) -> str:
    return str(answer["id"]).split("-")[1]  # the mock names its port in the answer's id: "cmpl-mock<port>-<n>"


def test_prefix_cache_balancing_keeps_a_conversation_on_one_replica_and_spills_when_saturated(
    mocks: Callable[..., MockUpstream],
) -> None:
    quick_a, quick_b = mocks(), mocks()
    slow_a, slow_b = mocks("--latency-ms", "400"), mocks("--latency-ms", "400")

    def route(name: str, balancing: str, urls: tuple[str, str]) -> str:
        return f"""
  {name}:
    targets:
      main: {{url: ["{urls[0]}", "{urls[1]}"]}}
    balancing: {balancing}"""

    config = "routes:" + "".join(
        [
            route("chat", "prefix_cache", (quick_a.url, quick_b.url)),
            route("busy", "prefix_cache", (slow_a.url, slow_b.url)),
            route("spread", "round_robin", (quick_a.url, quick_b.url)),
        ]
    )

    async def ask(gateway: Gateway, payload: dict[str, object], model: str) -> str:
        response = await gateway.client.post("/v1/chat/completions", json={**payload, "model": model})
        assert response.status_code == 200, response.text
        return _replica_of(response.json())

    async def scenario() -> None:
        async with serving(deployments=config) as gateway:
            for model in ("chat", "spread"):
                served: dict[int, set[str]] = {}
                for turn in range(4):  # conversations interleaved turn by turn, as concurrent users would be
                    for conversation in range(5):  # an odd count: round-robin alternates each one
                        replica = await ask(gateway, _turns(conversation, 4)[turn], model)
                        served.setdefault(conversation, set()).add(replica)
                sticky = all(len(replicas) == 1 for replicas in served.values())
                assert sticky == (model == "chat"), served  # round-robin moves every conversation about
            # new conversations arriving together share the shared system prompt's blocks, but not one replica
            opened = await asyncio.gather(*(ask(gateway, _turns(c, 1)[0], "busy") for c in range(6)))
            assert len(set(opened)) == 2, opened
            # a burst of one conversation's turn while its replica is busy: past the load cap it spills over
            first = _turns(99, 2)
            home = await ask(gateway, first[0], "busy")
            burst = await asyncio.gather(*(ask(gateway, first[1], "busy") for _ in range(6)))
            assert burst.count(home) >= 2 and len(set(burst)) == 2, (home, burst)
            assert [r.upstream.active_requests for r in gateway.runtime.catalog().replicas()] == [0, 0, 0, 0]

    asyncio.run(asyncio.wait_for(scenario(), 120))
