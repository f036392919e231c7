"""The rollouts part of one gateway process: every gateway lays the active rollouts' splits over its routes; the
one holding the ``rollouts`` lease also runs the controller that judges them and the drift watch."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Protocol

from prometheus_client import CollectorRegistry

from modelyard.deploy.rollout_split import TrafficSplit
from modelyard.registry.store import RegistryStore
from modelyard.rollouts.controller import RolloutController
from modelyard.rollouts.drift import DriftWatch
from modelyard.rollouts.experiment_store import ExperimentStore
from modelyard.rollouts.metrics import RolloutMetrics
from modelyard.rollouts.store import RolloutStore
from modelyard.store.database import Database, StoreUnavailable
from modelyard.store.leases import LeaseKeeper

log = logging.getLogger("modelyard.rollouts")
TRAFFIC_POLL_S = 1.0


class SplitServing(Protocol):
    """What lays rollout splits over its routes: the reconciler (``serve``, which also starts a candidate's
    engines) or a gateway replica's fleet (``modelyard gateway``)."""

    splits: tuple[TrafficSplit, ...]

    async def apply_splits(self, splits: tuple[TrafficSplit, ...]) -> None: ...


class RolloutService:
    def __init__(
        self,
        database: Database,
        registry: RegistryStore,
        reconciler: SplitServing,
        holder: str,
        metrics_registry: CollectorRegistry,
    ) -> None:
        self.store = RolloutStore(database)
        self.experiments = ExperimentStore(database)
        self.metrics = RolloutMetrics(metrics_registry)
        self.controller = RolloutController(
            self.store, registry, f"rollouts@{holder}", self.metrics.decided, self.metrics.looked
        )
        self.drift = DriftWatch(database, metrics_registry)
        self._reconciler = reconciler
        self._keeper = LeaseKeeper(database, "rollouts", holder)
        self._tasks: list[asyncio.Task[None]] = []
        self._refused: tuple[TrafficSplit, ...] | None = None

    async def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._follow_splits(), name="rollout-traffic"),
            asyncio.create_task(self._keeper.run(self._lease_job), name="rollout-controller"),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _splits(self) -> tuple[TrafficSplit, ...]:
        return tuple(sorted((*self.store.splits(), *self.experiments.splits()), key=lambda split: split.route))

    async def _lease_job(self) -> None:
        """What only the lease holder runs: the controller and the drift watch."""
        await asyncio.gather(self.controller.run(), self.drift.run())

    async def _follow_splits(self) -> None:
        """Keep this gateway's routes in step with the active rollouts (a candidate's engines are ready before
        its share reaches them; a split that cannot be served is logged once and retried when it changes)."""
        while True:
            splits: tuple[TrafficSplit, ...] = ()
            try:
                splits = await asyncio.to_thread(self._splits)
                if splits != self._reconciler.splits and splits != self._refused:
                    await self._reconciler.apply_splits(splits)
                    log.info("rollout splits: %s", [f"{s.route} {s.share:g}% → v{s.candidate_version}" for s in splits])
            except StoreUnavailable as exc:
                log.warning("rollouts: database unreachable (%s); keeping the current splits", exc)
            except Exception as exc:
                log.error("rollouts: cannot serve the splits %s: %s", splits, exc)
                self._refused = splits
            await asyncio.sleep(TRAFFIC_POLL_S)
