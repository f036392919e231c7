"""The experiments admin API: create (the JSON form of the experiment YAML), list, results, stop.

An experiment is ``{"object": "experiment", "name", "route", "control", "treatments", "allocation", "primary",
"guardrails", "sticky", "min_sample", "max_duration_s", "alpha", "state", "created_by", "created_at",
"updated_at"}``; its results add ``requests`` (per arm), ``results`` (per treatment: ``primary`` and
``guardrails`` comparisons, each with effect, interval, p-/e-value, samples and verdict) and ``sample_ratio``.
"""

from __future__ import annotations

import asyncio

from modelyard.api.caller import actor
from modelyard.api.replies import Reply
from modelyard.asgi import Request
from modelyard.errors import not_available_here
from modelyard.jsonbody import decode_object
from modelyard.registry.store import RegistryStore
from modelyard.rollouts.experiment import parse_experiment
from modelyard.rollouts.experiment_store import ExperimentStore

_BODY_LIMIT = 64 * 1024


class ExperimentsAdmin:
    def __init__(self, store: ExperimentStore | None, registry: RegistryStore | None) -> None:
        self._store = store
        self._registry = registry

    def _need(self) -> tuple[ExperimentStore, RegistryStore]:
        if self._store is None or self._registry is None:
            raise not_available_here("The experiments API (it needs the registry and its database)")
        return self._store, self._registry

    async def list_experiments(self, request: Request) -> Reply:
        store, _ = self._need()
        experiments = await asyncio.to_thread(store.find)
        return 200, {"object": "list", "data": [e.to_json() for e in experiments]}

    async def create(self, request: Request) -> Reply:
        store, registry = self._need()
        spec = parse_experiment(decode_object(await request.body(_BODY_LIMIT)))
        experiment = await asyncio.to_thread(store.create, spec, registry, actor(request))
        return 201, experiment.to_json()

    async def get(self, request: Request) -> Reply:
        store, _ = self._need()
        return 200, await asyncio.to_thread(store.report, request.params["experiment"])

    async def stop(self, request: Request) -> Reply:
        store, _ = self._need()
        experiment = await asyncio.to_thread(store.stop, request.params["experiment"], actor(request))
        return 200, experiment.to_json()
