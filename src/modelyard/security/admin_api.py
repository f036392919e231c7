"""Admin REST endpoints of the security layer: keys, spend, guardrail config, audit log.

Mounted beside the registry's admin API (same ``/admin/`` prefix, same scope rules: GET needs ``read``, writes
need ``admin``). Database work runs in worker threads; every write is audited by the store in its own
transaction, and refreshes this gateway's key snapshot at once (other replicas follow within a poll).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal
from urllib.parse import parse_qsl

import msgspec
import orjson

from modelyard.api.admin_routes import AdminRoutes
from modelyard.api.asgi import Receive, Scope, Send, header, read_body, send_bytes, send_error
from modelyard.errors import APIError, store_unavailable
from modelyard.gateway.schemas import decode_object, validate
from modelyard.security.budgets import current_periods
from modelyard.security.guardrails.config import GuardrailConfig, GuardrailConfigError, parse_config
from modelyard.security.key_store import KeyRequestError, NewKey
from modelyard.security.keys import KeyLimits
from modelyard.store.database import StoreUnavailable

_BODY_LIMIT = 256 * 1024
NonNegative = Annotated[int, msgspec.Meta(ge=0)]


class KeyLimitsBody(msgspec.Struct, forbid_unknown_fields=True):
    rpm: NonNegative = 0
    tpm: NonNegative = 0
    concurrency: NonNegative = 0
    token_budget: NonNegative = 0
    cost_budget_usd: Annotated[float, msgspec.Meta(ge=0)] = 0.0
    budget_period: Literal["day", "month"] = "month"


class CreateKey(msgspec.Struct, forbid_unknown_fields=True):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=128, pattern=r"\S")]
    scopes: Annotated[list[Literal["inference", "admin", "read"]], msgspec.Meta(min_length=1)] = msgspec.field(
        default_factory=lambda: ["inference"]
    )
    models: list[Annotated[str, msgspec.Meta(min_length=1, max_length=256)]] = []
    regions: list[Annotated[str, msgspec.Meta(min_length=1, max_length=64)]] = []
    limits: KeyLimitsBody = msgspec.field(default_factory=KeyLimitsBody)
    expires_at: datetime | None = None
    expires_in_s: Annotated[float, msgspec.Meta(gt=0, le=10 * 365 * 86400)] | None = None


class ExpireKey(msgspec.Struct, forbid_unknown_fields=True):
    expires_at: datetime | None = None
    expires_in_s: Annotated[float, msgspec.Meta(ge=0, le=10 * 365 * 86400)] | None = None


class SecurityAdmin:
    def __init__(self, layer: Any) -> None:
        self._layer = layer
        self._routes = AdminRoutes(
            [
                (r"^/admin/keys$", {"GET": self._list_keys, "POST": self._create_key}),
                (r"^/admin/keys/(?P<id>[^/]+)/revoke$", {"POST": self._revoke_key}),
                (r"^/admin/keys/(?P<id>[^/]+)/expire$", {"POST": self._expire_key}),
                (r"^/admin/keys/(?P<id>[^/]+)/spend$", {"GET": self._key_spend}),
                (r"^/admin/keys/(?P<id>[^/]+)$", {"GET": self._get_key}),
                (r"^/admin/spend$", {"GET": self._spend}),
                (
                    r"^/admin/guardrails$",
                    {"GET": self._get_guardrails, "PUT": self._put_guardrails, "DELETE": self._delete_guardrails},
                ),
                (r"^/admin/audit$", {"GET": self._audit}),
                (r"^/admin/audit/verify$", {"GET": self._verify}),
            ],
            head_as_get=True,
        )

    @staticmethod
    def handles(path: str) -> bool:
        return path.startswith(("/admin/keys", "/admin/spend", "/admin/guardrails", "/admin/audit"))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            handler, params = self._routes.resolve(scope["method"], scope["path"])
            status, result = await handler(scope, receive, params)
        except KeyRequestError as exc:
            code = "not_found" if exc.status == 404 else "invalid_value"
            await send_error(send, APIError(exc.status, exc.message, code=code, param=exc.param))
            return
        except GuardrailConfigError as exc:
            await send_error(send, APIError(400, str(exc), code="invalid_value"))
            return
        except StoreUnavailable as exc:
            await send_error(send, store_unavailable(str(exc)))
            return
        except APIError as exc:
            await send_error(send, exc)
            return
        await send_bytes(send, status, orjson.dumps(result))

    # -- keys --------------------------------------------------------------------------------------------------------

    async def _list_keys(self, scope: Scope, receive: Receive, params: dict[str, str]) -> tuple[int, Any]:
        keys = await asyncio.to_thread(self._layer.keys.list)
        return 200, {"object": "list", "data": [k.to_json() for k in keys]}

    async def _get_key(self, scope: Scope, receive: Receive, params: dict[str, str]) -> tuple[int, Any]:
        return 200, (await asyncio.to_thread(self._layer.keys.get, params["id"])).to_json()

    async def _create_key(self, scope: Scope, receive: Receive, params: dict[str, str]) -> tuple[int, Any]:
        body = validate(decode_object(await read_body(receive, scope, _BODY_LIMIT)), CreateKey)
        new = NewKey(
            name=body.name,
            scopes=tuple(body.scopes),
            models=tuple(body.models),
            regions=tuple(body.regions),
            limits=KeyLimits(**msgspec.to_builtins(body.limits)),
            expires_at=_expiry(body.expires_at, body.expires_in_s),
        )
        record, secret = await asyncio.to_thread(self._layer.keys.create, new, _actor(scope))
        self._layer.poller.refresh_now()
        return 201, {**record.to_json(), "key": secret}

    async def _revoke_key(self, scope: Scope, receive: Receive, params: dict[str, str]) -> tuple[int, Any]:
        record = await asyncio.to_thread(self._layer.keys.revoke, params["id"], _actor(scope))
        self._layer.poller.refresh_now()
        return 200, record.to_json()

    async def _expire_key(self, scope: Scope, receive: Receive, params: dict[str, str]) -> tuple[int, Any]:
        raw = await read_body(receive, scope, _BODY_LIMIT)
        body = validate(decode_object(raw), ExpireKey) if raw.strip() else ExpireKey(expires_in_s=0)
        when = _expiry(body.expires_at, body.expires_in_s)
        record = await asyncio.to_thread(self._layer.keys.set_expiry, params["id"], when, _actor(scope))
        self._layer.poller.refresh_now()
        return 200, record.to_json()

    async def _key_spend(self, scope: Scope, receive: Receive, params: dict[str, str]) -> tuple[int, Any]:
        record = await asyncio.to_thread(self._layer.keys.get, params["id"])
        rows = await asyncio.to_thread(self._layer.keys.spend, None, params["id"])
        return 200, {"key": record.to_json(), "object": "list", "data": rows}

    async def _spend(self, scope: Scope, receive: Receive, params: dict[str, str]) -> tuple[int, Any]:
        query = dict(parse_qsl(scope.get("query_string", b"").decode()))
        periods = [query["period"]] if query.get("period") else current_periods()
        rows = await asyncio.to_thread(self._layer.keys.spend, periods)
        return 200, {"object": "list", "periods": periods, "data": rows}

    # -- guardrails --------------------------------------------------------------------------------------------------

    async def _get_guardrails(self, scope: Scope, receive: Receive, params: dict[str, str]) -> tuple[int, Any]:
        return 200, {"source": self._layer.guardrails_source, "config": self._layer.guardrails.to_json()}

    async def _put_guardrails(self, scope: Scope, receive: Receive, params: dict[str, str]) -> tuple[int, Any]:
        body = decode_object(await read_body(receive, scope, _BODY_LIMIT))
        config: GuardrailConfig = parse_config(body, "request body")
        await asyncio.to_thread(self._layer.keys.set_guardrails, config.to_json(), _actor(scope))
        self._layer.poller.refresh_now()
        return 200, {"source": "admin-api", "config": config.to_json()}

    async def _delete_guardrails(self, scope: Scope, receive: Receive, params: dict[str, str]) -> tuple[int, Any]:
        await asyncio.to_thread(self._layer.keys.set_guardrails, None, _actor(scope))
        self._layer.poller.refresh_now()
        return 200, {"source": "file", "config": None}

    # -- audit -------------------------------------------------------------------------------------------------------

    async def _audit(self, scope: Scope, receive: Receive, params: dict[str, str]) -> tuple[int, Any]:
        query = dict(parse_qsl(scope.get("query_string", b"").decode()))
        try:
            limit = max(1, min(1000, int(query.get("limit", "100"))))
        except ValueError:
            raise APIError(400, "limit must be an integer", code="invalid_value", param="limit") from None
        records = await asyncio.to_thread(self._layer.audit.list, limit, query.get("action"), query.get("target"))
        return 200, {"object": "list", "data": [r.to_json() for r in records]}

    async def _verify(self, scope: Scope, receive: Receive, params: dict[str, str]) -> tuple[int, Any]:
        result = await asyncio.to_thread(self._layer.audit.verify)
        return 200, {
            "ok": result.ok,
            "checked": result.checked,
            "head_id": result.head_id,
            "head_hash": result.head_hash,
            "problem": result.problem or None,
            "record_id": result.record_id,
        }


def _expiry(at: datetime | None, in_s: float | None) -> datetime | None:
    if in_s is not None:
        return datetime.now(UTC) + timedelta(seconds=in_s)
    if at is not None and at.tzinfo is None:
        raise APIError(
            400,
            "expires_at must include a time zone (e.g. 2027-01-01T00:00:00Z)",
            code="invalid_value",
            param="expires_at",
        )
    return at


def _actor(scope: Scope) -> str:
    stated = header(scope, b"x-modelyard-actor")
    if stated:
        return stated.decode(errors="replace")[:256]
    client = scope.get("client") or ("unknown", 0)
    return f"admin-api@{client[0]}"
