"""Re-admitting ejected replicas: probe each one's health endpoint when its cooldown is over.

Probes run in one background task, never on a request's path: a local engine is asked ``/health`` (200 once
the model is loaded), a remote upstream ``/v1/models``. Success closes the breaker; failure doubles the wait. A
replica whose engine process was replaced since it was ejected is probed at once (requests wait for it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

import aiohttp

from modelyard.engines.remote import RemoteUpstream
from modelyard.observability.routing_metrics import RoutingMetrics
from modelyard.routing.breaker import after_probe, probe_due
from modelyard.routing.model import Replica

log = logging.getLogger("modelyard.routing")


class BreakerProber:
    def __init__(
        self, replicas: Callable[[], list[Replica]], metrics: RoutingMetrics, interval_s: float = 0.25
    ) -> None:
        self._replicas = replicas
        self._metrics = metrics
        self._interval_s = interval_s
        self._task: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2))
        self._task = asyncio.create_task(self._run(), name="breaker-prober")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._session is not None:
            await self._session.close()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            now = time.monotonic()
            due = [
                r
                for r in self._replicas()
                if probe_due(r.breaker, now) or (r.replaced_since_ejection and r.upstream.ready)
            ]
            if due:
                await asyncio.gather(*(self._probe(r) for r in due))

    async def _probe(self, replica: Replica) -> None:
        assert self._session is not None
        upstream = replica.upstream
        path = "/v1/models" if isinstance(upstream, RemoteUpstream) else "/health"
        ok = False
        if upstream.ready:
            try:
                async with self._session.get(upstream.base_url + path, headers=_auth(replica)) as response:
                    ok = response.status == 200
            except (aiohttp.ClientError, TimeoutError, OSError):
                ok = False
        replica.breaker = after_probe(replica.breaker, ok, time.monotonic(), replica.breaker_policy)
        if ok:
            log.info("replica %s passed its probe: back in rotation", replica.name)
            self._metrics.readmitted(replica.name)


def _auth(replica: Replica) -> dict[str, str]:
    if not replica.auth_header:
        return {}
    name, _, value = replica.auth_header.decode().strip().partition(": ")
    return {name: value}
