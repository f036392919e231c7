"""The admin REST API over the registry: the same operations as ``modelyard models …``.

Every database call runs in a worker thread, so the event loop that serves inference never waits on the
database; if the database is down these calls fail with 503 while inference carries on from memory. Writes
poke the reconciler so a promotion starts moving traffic at once instead of at the next poll. Failures are
raised as they are (registry errors, bad bodies) and answered by the app (``api/problems.py``).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Protocol

import orjson

from modelyard.api.admin_schemas import CardQuery, MoveAlias, Promote, RegisterVersion, Rollback, UpdateModel
from modelyard.api.caller import actor
from modelyard.api.replies import Ndjson, Reply
from modelyard.asgi import Request
from modelyard.deploy.deployments import DeploymentsManager
from modelyard.errors import not_found
from modelyard.evals.gates import gates_to_json, parse_gates
from modelyard.evals.storage import EvalStore, version_evaluations
from modelyard.jsonbody import decode, decode_object, validate
from modelyard.observability.request_log_store import RequestLogStore
from modelyard.observability.request_query import build_query
from modelyard.registry.card import model_card, render_markdown
from modelyard.registry.integrity import IntegrityChecker
from modelyard.registry.references import check_alias_name, parse_ref, parse_version_number
from modelyard.registry.registration import Declared, register_file
from modelyard.registry.store import ModelDetails, RegistryStore
from modelyard.routing.catalog import ModelCatalog

_BODY_LIMIT = 64 * 1024


class Serving(Protocol):
    """What serves the registry: the reconciler over supervised engines, or a gateway replica's fleet."""

    @property
    def catalog(self) -> ModelCatalog: ...

    def describe(self) -> dict[str, object]: ...

    def poke(self) -> None: ...


class RegistryAdmin:
    def __init__(
        self,
        store: RegistryStore,
        checker: IntegrityChecker,
        reconciler: Serving,
        requests: RequestLogStore,
        deployments: DeploymentsManager,
    ) -> None:
        self._deployments = deployments
        self._store = store
        self._checker = checker
        self._reconciler = reconciler
        self._requests = requests

    # -- reads ------------------------------------------------------------------------------------------------

    async def list_models(self, request: Request) -> Reply:
        models = await asyncio.to_thread(self._store.list_models)
        return 200, {"object": "list", "data": [m.to_json() for m in models]}

    async def get_model(self, request: Request) -> Reply:
        model = await asyncio.to_thread(self._store.get_model, request.params["name"])
        return 200, model.to_json()

    async def get_version(self, request: Request) -> Reply:
        version = await asyncio.to_thread(
            self._store.get_version, request.params["name"], parse_version_number(request.params["version"])
        )
        return 200, version.to_json()

    async def events(self, request: Request) -> Reply:
        limit = request.query_int("limit", 100, 1, 1000)
        events = await asyncio.to_thread(self._store.events, request.params["name"], limit)
        return 200, {"object": "list", "data": [e.to_json() | {"summary": e.describe()} for e in events]}

    async def card(self, request: Request) -> Reply:
        query = validate(request.query(), CardQuery, strict=False)
        name = request.params["name"]
        if query.version is not None:
            ref = parse_ref(f"{name}:{query.version}")
        elif query.alias is not None:
            ref = parse_ref(f"{name}@{query.alias}")
        else:
            ref = parse_ref(name)

        def build() -> dict[str, Any]:
            version = self._store.resolve(ref)
            evaluations = version_evaluations(EvalStore(self._store.database), version.key)
            return model_card(self._store.get_model(name), version, self._store.events(name, limit=1000), evaluations)

        card = await asyncio.to_thread(build)
        return 200, render_markdown(card) if query.format == "md" else card

    async def serving(self, request: Request) -> Reply:
        return 200, self._reconciler.describe()

    async def list_requests(self, request: Request) -> Reply:
        query = build_query(request.query())
        rows = await asyncio.to_thread(self._requests.query, query)
        return 200, {"object": "list", "data": rows}

    async def get_request(self, request: Request) -> Reply:
        rows = await asyncio.to_thread(self._requests.find, request.params["id"])
        if not rows:
            raise not_found(f"No stored request has the id {request.params['id']!r}.", "id")
        return 200, {"object": "list", "data": rows}

    async def export_requests(self, request: Request) -> Reply:
        """JSONL for offline evaluation: one request per line, everything matching unless ``limit`` is given."""
        query = build_query(request.query(), default_limit=0)

        def lines() -> bytes:
            return b"".join(orjson.dumps(row) + b"\n" for row in self._requests.iter(query))

        return 200, Ndjson(await asyncio.to_thread(lines))

    async def shadow_pairs(self, request: Request) -> Reply:
        query = build_query(request.query())
        pairs = await asyncio.to_thread(self._requests.shadow_pairs, query)
        return 200, {"object": "list", "data": pairs}

    async def get_deployments(self, request: Request) -> Reply:
        text = await asyncio.to_thread(self._deployments.current_text)
        return 200, {**self._deployments.status(), "config": text, "serving": self._reconciler.catalog.routes()}

    # -- writes -----------------------------------------------------------------------------------------------

    async def put_deployments(self, request: Request) -> Reply:
        """The whole deployments file (YAML or JSON) as the body: validated and applied, or refused as a whole."""
        body = await request.body(_BODY_LIMIT)
        return 200, await self._deployments.replace(body.decode(errors="replace"), actor(request))

    async def register(self, request: Request) -> Reply:
        body = decode(await request.body(_BODY_LIMIT), RegisterVersion)
        declared = Declared(
            license=body.license,
            base_model=body.base_model,
            parent=parse_ref(body.parent) if body.parent else None,
            training_data=tuple(body.training_data),
            fine_tuning_data=tuple(body.fine_tuning_data),
            lineage_notes=body.lineage_notes,
            description=body.description,
            owner=body.owner,
            tags=body.tags,
            alias=body.alias,
        )
        version = await asyncio.to_thread(
            register_file, self._store, self._checker, Path(body.path), body.name, declared, actor(request)
        )
        self._reconciler.poke()
        return 201, version.to_json()

    async def update_model(self, request: Request) -> Reply:
        body = decode(await request.body(_BODY_LIMIT), UpdateModel)
        details = ModelDetails(body.description, body.owner, body.tags)
        model = await asyncio.to_thread(self._store.update_model, request.params["name"], details, actor(request))
        self._reconciler.poke()  # prices live in tags
        return 200, model.to_json()

    async def move_alias(self, request: Request) -> Reply:
        body = decode(await request.body(_BODY_LIMIT), MoveAlias)
        alias = check_alias_name(request.params["alias"])
        return await self._move(request, alias, body.version, body.expected_version, body.force, body.reason)

    async def remove_alias(self, request: Request) -> Reply:
        event = await asyncio.to_thread(
            self._store.remove_alias, request.params["name"], request.params["alias"], actor(request)
        )
        self._reconciler.poke()
        return 200, event.to_json()

    async def promote(self, request: Request) -> Reply:
        body = decode(await request.body(_BODY_LIMIT), Promote)
        return await self._move(request, body.alias, body.version, body.expected_version, body.force, body.reason)

    async def _move(
        self, request: Request, alias: str, version: int, expected: int | None, force: bool, reason: str
    ) -> Reply:
        name, who = request.params["name"], actor(request)
        move = await asyncio.to_thread(self._store.move_alias, name, alias, version, who, expected, force, reason)
        self._reconciler.poke()
        return 200, move.to_json()

    async def rollback(self, request: Request) -> Reply:
        raw = await request.body(_BODY_LIMIT)
        body = validate(decode_object(raw), Rollback) if raw.strip() else Rollback()
        move = await asyncio.to_thread(self._store.rollback, request.params["name"], body.alias, actor(request))
        self._reconciler.poke()
        return 200, move.to_json()

    async def get_gates(self, request: Request) -> Reply:
        spec = await asyncio.to_thread(EvalStore(self._store.database).get_gates, request.params["name"])
        return 200, gates_to_json(spec) if spec is not None else {"gates": [], "aliases": []}

    async def set_gates(self, request: Request) -> Reply:
        """Replace a model's gates: the same document as ``models gates set --file`` (JSON here)."""
        spec = parse_gates(decode_object(await request.body(_BODY_LIMIT)), "request body")
        await asyncio.to_thread(EvalStore(self._store.database).set_gates, request.params["name"], spec, actor(request))
        return 200, gates_to_json(spec)

    async def clear_gates(self, request: Request) -> Reply:
        await asyncio.to_thread(EvalStore(self._store.database).set_gates, request.params["name"], None, actor(request))
        return 200, {"gates": [], "aliases": []}

    async def archive(self, request: Request) -> Reply:
        version = await asyncio.to_thread(
            self._store.archive, request.params["name"], parse_version_number(request.params["version"]), actor(request)
        )
        self._reconciler.poke()
        return 200, version.to_json()
