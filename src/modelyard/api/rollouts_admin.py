"""The rollouts admin API: start a rollout, read its state and decisions, resume / promote / roll back / abort.

JSON shapes (documented in docs/experiments.md and /openapi.json): a rollout is ``{"object": "rollout", "id",
"route", "model", "control_version", "candidate_version", "steps", "step", "share", "state", "reason", "plan",
"created_by", "started_at", "step_started_at", "updated_at"}``; a decision ``{"object": "rollout.decision", "id",
"rollout_id", "at", "step", "share", "action", "reason", "numbers", "actor"}`` where ``numbers`` holds the
comparisons (effect, interval, p-/e-value, samples per arm, verdict) and the sample-ratio check.
"""

from __future__ import annotations

import asyncio

from modelyard.api.caller import actor
from modelyard.api.replies import Reply
from modelyard.asgi import Request
from modelyard.errors import invalid_value, not_available_here
from modelyard.jsonbody import decode_object
from modelyard.registry.store import RegistryStore
from modelyard.rollouts import operations
from modelyard.rollouts.controller import RolloutController
from modelyard.rollouts.plan import parse_plan
from modelyard.rollouts.store import RolloutStore

_BODY_LIMIT = 64 * 1024


class RolloutsAdmin:
    def __init__(
        self, store: RolloutStore | None, registry: RegistryStore | None, controller: RolloutController | None
    ) -> None:
        self._store = store
        self._registry = registry
        self._controller = controller

    def _need(self) -> RolloutStore:
        if self._store is None:
            raise not_available_here("The rollouts API (it needs the registry and its database)")
        return self._store

    async def list_rollouts(self, request: Request) -> Reply:
        store = self._need()
        query = request.query()
        active = query.get("active") in ("1", "true", "yes")
        route = query.get("route")
        limit = request.query_int("limit", 100, 1, 1000)
        rollouts = await asyncio.to_thread(store.find, active, route, limit)
        return 200, {"object": "list", "data": [r.to_json() for r in rollouts]}

    async def start(self, request: Request) -> Reply:
        store = self._need()
        assert self._registry is not None
        body = decode_object(await request.body(_BODY_LIMIT))
        unknown = sorted(set(body) - {"route", "candidate", "plan"})
        if unknown:
            raise invalid_value(f"Unknown field '{unknown[0]}' (known: route, candidate, plan).", unknown[0])
        for field in ("route", "candidate"):
            if not isinstance(body.get(field), str) or not body[field]:
                raise invalid_value(f"'{field}' is required (a string).", field)
        plan_body = body.get("plan", {})
        if not isinstance(plan_body, dict):
            raise invalid_value("'plan' must be an object.", "plan")
        plan = parse_plan(plan_body)
        rollout = await asyncio.to_thread(
            operations.start_rollout, store, self._registry, body["route"], body["candidate"], plan, actor(request)
        )
        return 201, rollout.to_json()

    async def get(self, request: Request) -> Reply:
        store = self._need()
        rollout_id = _id(request)
        rollout = await asyncio.to_thread(store.get, rollout_id)
        decisions = await asyncio.to_thread(store.decisions, rollout_id)
        return 200, {**rollout.to_json(), "last_decision": decisions[-1].to_json() if decisions else None}

    async def decisions(self, request: Request) -> Reply:
        store = self._need()
        decisions = await asyncio.to_thread(store.decisions, _id(request))
        return 200, {"object": "list", "data": [d.to_json() for d in decisions]}

    async def resume(self, request: Request) -> Reply:
        rollout = await asyncio.to_thread(operations.resume, self._need(), _id(request), actor(request))
        return 200, rollout.to_json()

    async def rollback(self, request: Request) -> Reply:
        rollout = await asyncio.to_thread(operations.rollback, self._need(), _id(request), actor(request))
        return 200, rollout.to_json()

    async def abort(self, request: Request) -> Reply:
        rollout = await asyncio.to_thread(operations.abort, self._need(), _id(request), actor(request))
        return 200, rollout.to_json()

    async def promote(self, request: Request) -> Reply:
        store = self._need()
        if self._controller is None:
            raise not_available_here("Promotion (it needs the registry)")
        acted = await asyncio.to_thread(operations.promote, self._controller, store, _id(request), actor(request))
        return 200, {**acted.rollout.to_json(), "last_decision": acted.decision.to_json()}


def _id(request: Request) -> int:
    return int(request.params["rollout"])
