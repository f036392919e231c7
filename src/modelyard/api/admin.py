"""The admin REST API over the registry: the same operations as ``modelyard models …``.

Every database call runs in a worker thread, so the event loop that serves inference never waits on the
database; if the database is down these calls fail with 503 while inference carries on from memory. Writes
poke the reconciler so a promotion starts moving traffic at once instead of at the next poll.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import orjson

from modelyard.api.admin_routes import AdminRoutes, Handler
from modelyard.api.admin_schemas import CardQuery, MoveAlias, Promote, RegisterVersion, Rollback, UpdateModel
from modelyard.api.asgi import Receive, Scope, Send, header, read_body, send_bytes, send_error
from modelyard.deploy.deployments import DeploymentsManager
from modelyard.deploy.reconciler import Reconciler
from modelyard.errors import APIError, store_unavailable
from modelyard.evals.gates import gates_to_json, parse_gates
from modelyard.evals.storage import EvalStore, version_evaluations
from modelyard.evals.suite import SuiteError
from modelyard.gateway.schemas import decode_object, validate
from modelyard.observability.request_log_store import RequestLogStore
from modelyard.observability.request_query import QueryError, build_query
from modelyard.registry.card import model_card, render_markdown
from modelyard.registry.errors import RegistryError
from modelyard.registry.integrity import IntegrityChecker
from modelyard.registry.references import check_alias_name, parse_ref
from modelyard.registry.registration import Declared, register_file
from modelyard.registry.store import ModelDetails, RegistryStore
from modelyard.routing.config import DeploymentsError
from modelyard.store.database import StoreUnavailable

PREFIX = "/admin/"
_BODY_LIMIT = 64 * 1024
_NAME = r"(?P<name>[^@:]+?)"


class AdminAPI:
    def __init__(
        self,
        store: RegistryStore,
        checker: IntegrityChecker,
        reconciler: Reconciler,
        requests: RequestLogStore,
        deployments: DeploymentsManager,
    ) -> None:
        self._deployments = deployments
        self._store = store
        self._checker = checker
        self._reconciler = reconciler
        self._requests = requests
        # Most specific first: model names may contain '/', so "{name}/versions/2" must not match "{name}".
        self._routes = AdminRoutes(
            [
                (rf"^/admin/models/{_NAME}/versions/(?P<version>\d+)/archive$", {"POST": self._archive}),
                (rf"^/admin/models/{_NAME}/versions/(?P<version>\d+)$", {"GET": self._get_version}),
                (
                    rf"^/admin/models/{_NAME}/aliases/(?P<alias>[^/]+)$",
                    {"PUT": self._move_alias, "DELETE": self._remove_alias},
                ),
                (rf"^/admin/models/{_NAME}/promote$", {"POST": self._promote}),
                (rf"^/admin/models/{_NAME}/rollback$", {"POST": self._rollback}),
                (rf"^/admin/models/{_NAME}/card$", {"GET": self._card}),
                (
                    rf"^/admin/models/{_NAME}/gates$",
                    {"GET": self._get_gates, "PUT": self._set_gates, "DELETE": self._clear_gates},
                ),
                (rf"^/admin/models/{_NAME}/events$", {"GET": self._events}),
                (rf"^/admin/models/{_NAME}$", {"GET": self._get_model, "PATCH": self._update_model}),
                (r"^/admin/models$", {"GET": self._list_models, "POST": self._register}),
                (r"^/admin/serving$", {"GET": self._serving}),
                (r"^/admin/requests$", {"GET": self._list_requests}),
                (r"^/admin/requests/export$", {"GET": self._export_requests}),
                (r"^/admin/shadow$", {"GET": self._shadow_pairs}),
                (r"^/admin/deployments$", {"GET": self._get_deployments, "PUT": self._put_deployments}),
            ]
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            handler, params = self._routes.resolve(scope["method"], scope["path"])
        except APIError as error:
            await send_error(send, error)
            return
        await self._respond(send, handler, scope, receive, params)

    async def _respond(
        self, send: Send, handler: Handler, scope: Scope, receive: Receive, params: dict[str, str]
    ) -> None:
        try:
            status, result = await handler(scope, receive, params)
        except QueryError as exc:
            await send_error(send, APIError(400, str(exc), code="invalid_value", param=exc.param))
            return
        except SuiteError as exc:
            await send_error(send, APIError(400, str(exc), code="invalid_value", param="gates"))
            return
        except RegistryError as exc:
            await send_error(send, APIError(exc.status, exc.message, code=exc.code, param=exc.param))
            return
        except StoreUnavailable as exc:
            await send_error(send, store_unavailable(str(exc)))
            return
        except APIError as exc:
            await send_error(send, exc)
            return
        if isinstance(result, Ndjson):
            await send_bytes(send, status, result.body, content_type=b"application/x-ndjson")
        elif isinstance(result, str):
            await send_bytes(send, status, result.encode(), content_type=b"text/markdown; charset=utf-8")
        else:
            await send_bytes(send, status, orjson.dumps(result))

    # -- reads ------------------------------------------------------------------------------------------------

    async def _list_models(self, scope: Scope, receive: Receive, params: dict[str, str]) -> tuple[int, Any]:
        models = await asyncio.to_thread(self._store.list_models)
        return 200, {"object": "list", "data": [m.to_json() for m in models]}

    async def _get_model(self, scope: Scope, receive: Receive, params: dict[str, str]) -> tuple[int, Any]:
        model = await asyncio.to_thread(self._store.get_model, params["name"])
        return 200, model.to_json()

    async def _get_version(self, scope: Scope, receive: Receive, params: dict[str, str]) -> tuple[int, Any]:
        version = await asyncio.to_thread(self._store.get_version, params["name"], int(params["version"]))
        return 200, version.to_json()

    async def _events(self, scope: Scope, receive: Receive, params: dict[str, str]) -> tuple[int, Any]:
        query = dict(parse_qsl(scope.get("query_string", b"").decode()))
        try:
            limit = max(1, min(1000, int(query.get("limit", "100"))))
        except ValueError:
            raise APIError(400, "limit must be an integer", code="invalid_value", param="limit") from None
        events = await asyncio.to_thread(self._store.events, params["name"], limit)
        return 200, {"object": "list", "data": [e.to_json() | {"summary": e.describe()} for e in events]}

    async def _card(self, scope: Scope, receive: Receive, params: dict[str, str]) -> tuple[int, Any]:
        query = validate(dict(parse_qsl(scope.get("query_string", b"").decode())), CardQuery, strict=False)
        name = params["name"]
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

    async def _serving(self, scope: Scope, receive: Receive, params: dict[str, str]) -> tuple[int, Any]:
        return 200, self._reconciler.describe()

    async def _list_requests(self, scope: Scope, receive: Receive, params: dict[str, str]) -> tuple[int, Any]:
        query = build_query(_query_params(scope))
        rows = await asyncio.to_thread(self._requests.query, query)
        return 200, {"object": "list", "data": rows}

    async def _export_requests(self, scope: Scope, receive: Receive, params: dict[str, str]) -> tuple[int, Any]:
        """JSONL for offline evaluation: one request per line, everything matching unless ``limit`` is given."""
        query = build_query(_query_params(scope), default_limit=0)

        def lines() -> bytes:
            return b"".join(orjson.dumps(row) + b"\n" for row in self._requests.iter(query))

        return 200, Ndjson(await asyncio.to_thread(lines))

    async def _shadow_pairs(self, scope: Scope, receive: Receive, params: dict[str, str]) -> tuple[int, Any]:
        query = build_query(_query_params(scope))
        pairs = await asyncio.to_thread(self._requests.shadow_pairs, query)
        return 200, {"object": "list", "data": pairs}

    async def _get_deployments(self, scope: Scope, receive: Receive, params: dict[str, str]) -> tuple[int, Any]:
        text = await asyncio.to_thread(self._deployments.current_text)
        return 200, {**self._deployments.status(), "config": text, "serving": self._reconciler.catalog.routes()}

    # -- writes -----------------------------------------------------------------------------------------------

    async def _put_deployments(self, scope: Scope, receive: Receive, params: dict[str, str]) -> tuple[int, Any]:
        """The whole deployments file (YAML or JSON) as the body: validated and applied, or refused as a whole."""
        body = await read_body(receive, scope, _BODY_LIMIT)
        try:
            status = await self._deployments.replace(body.decode(errors="replace"), _actor(scope))
        except DeploymentsError as exc:
            raise APIError(400, str(exc), code="invalid_deployments", param=exc.path or None) from None
        return 200, status

    async def _register(self, scope: Scope, receive: Receive, params: dict[str, str]) -> tuple[int, Any]:
        body = validate(decode_object(await read_body(receive, scope, _BODY_LIMIT)), RegisterVersion)
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
            register_file, self._store, self._checker, Path(body.path), body.name, declared, _actor(scope)
        )
        self._reconciler.poke()
        return 201, version.to_json()

    async def _update_model(self, scope: Scope, receive: Receive, params: dict[str, str]) -> tuple[int, Any]:
        body = validate(decode_object(await read_body(receive, scope, _BODY_LIMIT)), UpdateModel)
        details = ModelDetails(body.description, body.owner, body.tags)
        model = await asyncio.to_thread(self._store.update_model, params["name"], details, _actor(scope))
        self._reconciler.poke()  # prices live in tags
        return 200, model.to_json()

    async def _move_alias(self, scope: Scope, receive: Receive, params: dict[str, str]) -> tuple[int, Any]:
        body = validate(decode_object(await read_body(receive, scope, _BODY_LIMIT)), MoveAlias)
        move = await asyncio.to_thread(
            self._store.move_alias,
            params["name"],
            check_alias_name(params["alias"]),
            body.version,
            _actor(scope),
            body.expected_version,
            body.force,
        )
        self._reconciler.poke()
        return 200, move.to_json()

    async def _remove_alias(self, scope: Scope, receive: Receive, params: dict[str, str]) -> tuple[int, Any]:
        event = await asyncio.to_thread(self._store.remove_alias, params["name"], params["alias"], _actor(scope))
        self._reconciler.poke()
        return 200, event.to_json()

    async def _promote(self, scope: Scope, receive: Receive, params: dict[str, str]) -> tuple[int, Any]:
        body = validate(decode_object(await read_body(receive, scope, _BODY_LIMIT)), Promote)
        move = await asyncio.to_thread(
            self._store.move_alias,
            params["name"],
            body.alias,
            body.version,
            _actor(scope),
            body.expected_version,
            body.force,
        )
        self._reconciler.poke()
        return 200, move.to_json()

    async def _rollback(self, scope: Scope, receive: Receive, params: dict[str, str]) -> tuple[int, Any]:
        raw = await read_body(receive, scope, _BODY_LIMIT)
        body = validate(decode_object(raw), Rollback) if raw.strip() else Rollback()
        move = await asyncio.to_thread(self._store.rollback, params["name"], body.alias, _actor(scope))
        self._reconciler.poke()
        return 200, move.to_json()

    async def _get_gates(self, scope: Scope, receive: Receive, params: dict[str, str]) -> tuple[int, Any]:
        spec = await asyncio.to_thread(EvalStore(self._store.database).get_gates, params["name"])
        return 200, gates_to_json(spec) if spec is not None else {"gates": [], "aliases": []}

    async def _set_gates(self, scope: Scope, receive: Receive, params: dict[str, str]) -> tuple[int, Any]:
        """Replace a model's gates: the same document as ``models gates set --file`` (JSON here)."""
        spec = parse_gates(decode_object(await read_body(receive, scope, _BODY_LIMIT)), "request body")
        await asyncio.to_thread(EvalStore(self._store.database).set_gates, params["name"], spec, _actor(scope))
        return 200, gates_to_json(spec)

    async def _clear_gates(self, scope: Scope, receive: Receive, params: dict[str, str]) -> tuple[int, Any]:
        await asyncio.to_thread(EvalStore(self._store.database).set_gates, params["name"], None, _actor(scope))
        return 200, {"gates": [], "aliases": []}

    async def _archive(self, scope: Scope, receive: Receive, params: dict[str, str]) -> tuple[int, Any]:
        version = await asyncio.to_thread(self._store.archive, params["name"], int(params["version"]), _actor(scope))
        self._reconciler.poke()
        return 200, version.to_json()


@dataclass(frozen=True)
class Ndjson:
    body: bytes


def _query_params(scope: Scope) -> dict[str, str]:
    return dict(parse_qsl(scope.get("query_string", b"").decode()))


def _actor(scope: Scope) -> str:
    """Who acts: the caller's own statement until API keys (with their owner) identify callers."""
    stated = header(scope, b"x-modelyard-actor")
    if stated:
        return stated.decode(errors="replace")[:256]
    client = scope.get("client") or ("unknown", 0)
    return f"admin-api@{client[0]}"
