"""Holding requests while their engines come back (gateway/hold.py, through gateway/forward.py): a request for a
target whose every engine is restarting waits and is answered once one is ready; past the route's ``hold_s`` or
beyond its ``hold_max`` it gets 503 with Retry-After; a client that leaves while held is counted as gone."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from inprocess import Gateway, chat, raw_call, serving
from mock_upstreams import MockUpstream
from modelyard.routing.model import Upstream
from modelyard.routing.weights import rendezvous_choice


class Restarting:
    """A supervised engine as the gateway sees it, in front of a real (mock) upstream: not ready and recovering
    until :meth:`back` — the part of ``engines/supervisor.py`` the hold reads, without a process to kill."""

    def __init__(self, real: Upstream) -> None:
        self.name = real.name
        self.base_url = real.base_url
        self.active_requests = 0
        self.ready = False
        self.recovering = True
        self.generation = 1
        self._changed = asyncio.Event()

    def back(self) -> None:
        self.ready, self.recovering, self.generation = True, False, 2
        self._changed_now()

    def gave_up(self) -> None:
        self.recovering = False
        self._changed_now()

    def restarting(self) -> None:
        self.recovering = True
        self._changed_now()

    def _changed_now(self) -> None:  # as the supervisor does: wake the waiters, then wait for the next change
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_change(self, timeout_s: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._changed.wait(), timeout_s)

    def retry_after_s(self) -> int:
        return 3

    def unavailable_reason(self) -> str:
        return "engine is restarting"

    def describe(self) -> dict[str, object]:
        return {"name": self.name}


def _restarting(gateway: Gateway) -> Restarting:
    (replica,) = gateway.runtime.catalog().replicas()
    engine = Restarting(replica.upstream)
    replica.upstream = engine
    return engine


def _routes(url: str, hold: str) -> str:
    return f"""
routes:
  m:
    targets:
      only: {{url: "{url}"}}
    retry: {{{hold}}}
"""


def test_a_request_waits_for_its_restarting_engine_and_is_answered(mocks: Callable[..., MockUpstream]) -> None:
    mock = mocks()

    async def scenario() -> None:
        async with serving(deployments=_routes(mock.url, "hold_s: 10")) as gateway:
            engine = _restarting(gateway)
            asked = [asyncio.create_task(gateway.client.post("/v1/chat/completions", json=chat("m"))) for _ in range(5)]
            streamed = asyncio.create_task(gateway.client.post("/v1/chat/completions", json=chat("m", stream=True)))
            await asyncio.sleep(0.3)
            assert not any(t.done() for t in [*asked, streamed])
            assert gateway.metric("modelyard_held_requests_waiting", route="m") == 6
            engine.back()
            answers = await asyncio.gather(*asked, streamed)
            assert [a.status_code for a in answers] == [200] * 6
            assert answers[-1].text.rstrip().endswith("data: [DONE]")
            assert gateway.metric("modelyard_held_requests_total", route="m", outcome="served") == 6
            assert gateway.metric("modelyard_held_requests_waiting", route="m") == 0
            assert engine.active_requests == 0

    asyncio.run(asyncio.wait_for(scenario(), 60))


def test_past_the_hold_or_its_bound_the_answer_is_503_with_retry_after(mocks: Callable[..., MockUpstream]) -> None:
    mock = mocks()

    async def scenario() -> None:
        async with serving(deployments=_routes(mock.url, "hold_s: 0.4, hold_max: 1")) as gateway:
            _restarting(gateway)
            first = asyncio.create_task(gateway.client.post("/v1/chat/completions", json=chat("m")))
            await asyncio.sleep(0.1)
            full = await gateway.client.post("/v1/chat/completions", json=chat("m"))
            assert full.status_code == 503
            assert full.headers["retry-after"] == "3"
            assert "1 requests already wait" in full.json()["error"]["message"]
            expired = await first
            assert expired.status_code == 503
            assert expired.json()["error"]["code"] == "engine_unavailable"
            assert "waited 0.4 s" in expired.json()["error"]["message"]
            assert int(expired.headers["retry-after"]) >= 1
            assert gateway.metric("modelyard_held_requests_total", route="m", outcome="expired") == 1
            assert gateway.metric("modelyard_held_requests_total", route="m", outcome="full") == 1

    asyncio.run(asyncio.wait_for(scenario(), 60))


def test_an_engine_that_gives_up_ends_the_wait_and_a_leaving_client_is_counted(
    mocks: Callable[..., MockUpstream],
) -> None:
    mock = mocks()

    async def scenario() -> None:
        async with serving(deployments=_routes(mock.url, "hold_s: 30")) as gateway:
            engine = _restarting(gateway)
            waiting = asyncio.create_task(gateway.client.post("/v1/chat/completions", json=chat("m")))
            await asyncio.sleep(0.2)
            engine.gave_up()  # failed for good: no point waiting the 30 s
            answer = await asyncio.wait_for(waiting, 2)
            assert answer.status_code == 503
            engine.restarting()
            left = await raw_call(
                gateway.runtime.app, "POST", "/v1/chat/completions", chat("m"), disconnect_after_s=0.3
            )
            assert left.status == 0, left.body  # nothing was sent: the client had gone
            assert gateway.metric("modelyard_held_requests_total", route="m", outcome="gone") == 1
            assert gateway.metric("modelyard_held_requests_waiting", route="m") == 0

    asyncio.run(asyncio.wait_for(scenario(), 60))


def test_holding_is_off_with_hold_s_zero(mocks: Callable[..., MockUpstream]) -> None:
    mock = mocks()

    async def scenario() -> None:
        async with serving(deployments=_routes(mock.url, "hold_s: 0")) as gateway:
            _restarting(gateway)
            answer = await asyncio.wait_for(gateway.client.post("/v1/chat/completions", json=chat("m")), 1)
            assert answer.status_code == 503
            assert gateway.metric("modelyard_held_requests_total", route="m") == 0

    asyncio.run(asyncio.wait_for(scenario(), 60))


def _canary(stable: MockUpstream, candidate: MockUpstream, *policy: str) -> str:
    """Route ``m``: 50/50 between ``stable`` and ``candidate``, with the given policy lines."""
    lines = "".join(f"    {line}\n" for line in policy)
    return (
        f'routes:\n  m:\n    targets:\n      stable: {{url: "{stable.url}", weight: 50}}\n'
        f'      candidate: {{url: "{candidate.url}", weight: 50}}\n{lines}'
    )


def _user_for(target: int) -> str:
    """A ``user`` the 50/50 split of route ``m`` sticks to target ``target`` (the hash the gateway uses)."""
    return next(
        u
        for u in (f"u{n}" for n in range(100))
        if rendezvous_choice(u, ["stable", "candidate"], [50, 50], "m") == target
    )


def test_a_request_whose_engine_died_under_it_goes_to_the_splits_other_target(
    mocks: Callable[..., MockUpstream],
) -> None:
    """A 50/50 canary: the request went to the candidate (the stable engine was restarting then), the candidate's
    engine dies under it and restarts for far longer than the hold; the stable version, back meanwhile, answers it
    instead of a 503 after ``hold_s``."""
    stable_mock, candidate_mock = mocks(), mocks("--latency-ms", "1500")
    deployments = _canary(stable_mock, candidate_mock, "retry: {hold_s: 1}")

    async def scenario() -> None:
        async with serving(deployments=deployments) as gateway:
            engines = {}
            for replica in gateway.runtime.catalog().replicas():
                engines[replica.upstream.base_url.rstrip("/").removesuffix("/v1")] = replica.upstream = Restarting(
                    replica.upstream
                )
            stable, candidate = (engines[m.url.removesuffix("/v1")] for m in (stable_mock, candidate_mock))
            candidate.back()  # only the candidate is up when the request is routed
            asked = asyncio.create_task(gateway.client.post("/v1/chat/completions", json=chat("m")))
            await asyncio.sleep(0.4)
            stable.back()
            candidate_mock.stop()  # the engine dies mid-answer: the gateway's connection is reset
            candidate.restarting()
            candidate.ready = False
            answer = await asyncio.wait_for(asked, 5)
            assert answer.status_code == 200, answer.text
            assert answer.headers["x-modelyard-target"] == "stable"
            assert gateway.metric("modelyard_held_requests_total", route="m") == 0  # answered without waiting

    asyncio.run(asyncio.wait_for(scenario(), 60))


def test_a_candidate_that_answers_errors_keeps_its_errors(mocks: Callable[..., MockUpstream]) -> None:
    """Only a target that is down is stood in for: a candidate that is up but answers 500 gives its client the
    error (moving those requests to the stable target would hide a bad canary from the analysis judging it)."""
    stable_mock, candidate_mock = mocks(), mocks("--fail-status", "500")
    deployments = _canary(stable_mock, candidate_mock, "sticky: {key: user}", "breaker: {failures: 1000}")
    user, other = _user_for(1), _user_for(0)  # sent to the candidate, to stable

    async def scenario() -> None:
        async with serving(deployments=deployments) as gateway:
            answer = await gateway.client.post("/v1/chat/completions", json=chat("m", user=user))
            assert answer.status_code >= 500, answer.text
            assert answer.headers["x-modelyard-target"] == "candidate"
            assert (await gateway.client.post("/v1/chat/completions", json=chat("m", user=other))).status_code == 200

    asyncio.run(asyncio.wait_for(scenario(), 60))
