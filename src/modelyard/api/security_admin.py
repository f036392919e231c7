"""Admin REST endpoints of the security layer: keys, spend, guardrail config, audit log.

Beside the registry's admin API under the same ``/admin/`` prefix, with the same scope rules (reading needs
``read``, writes need ``admin``). Database work runs in worker threads; every write is audited by the store in its
own transaction, and refreshes this gateway's key snapshot at once (other replicas follow within a poll).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import msgspec

from modelyard.api.admin_schemas import CreateKey, ExpireKey
from modelyard.api.caller import actor
from modelyard.api.replies import Reply
from modelyard.asgi import Request
from modelyard.errors import invalid_value
from modelyard.jsonbody import decode, decode_object, validate
from modelyard.security.budgets import current_periods
from modelyard.security.guardrails.config import GuardrailConfig, parse_config
from modelyard.security.key_store import NewKey
from modelyard.security.keys import KeyLimits
from modelyard.security.layer import SecurityLayer

_BODY_LIMIT = 256 * 1024


class SecurityAdmin:
    def __init__(self, layer: SecurityLayer) -> None:
        self._layer = layer

    # -- keys --------------------------------------------------------------------------------------------------------

    async def list_keys(self, request: Request) -> Reply:
        keys = await asyncio.to_thread(self._layer.keys.list)
        return 200, {"object": "list", "data": [k.to_json() for k in keys]}

    async def get_key(self, request: Request) -> Reply:
        return 200, (await asyncio.to_thread(self._layer.keys.get, request.params["id"])).to_json()

    async def create_key(self, request: Request) -> Reply:
        body = decode(await request.body(_BODY_LIMIT), CreateKey)
        new = NewKey(
            name=body.name,
            scopes=tuple(body.scopes),
            models=tuple(body.models),
            regions=tuple(body.regions),
            limits=KeyLimits(**msgspec.to_builtins(body.limits)),
            expires_at=_expiry(body.expires_at, body.expires_in_s),
        )
        record, secret = await asyncio.to_thread(self._layer.keys.create, new, actor(request))
        self._layer.poller.refresh_now()
        return 201, {**record.to_json(), "key": secret}

    async def revoke_key(self, request: Request) -> Reply:
        record = await asyncio.to_thread(self._layer.keys.revoke, request.params["id"], actor(request))
        self._layer.poller.refresh_now()
        return 200, record.to_json()

    async def expire_key(self, request: Request) -> Reply:
        raw = await request.body(_BODY_LIMIT)
        body = validate(decode_object(raw), ExpireKey) if raw.strip() else ExpireKey(expires_in_s=0)
        when = _expiry(body.expires_at, body.expires_in_s)
        record = await asyncio.to_thread(self._layer.keys.set_expiry, request.params["id"], when, actor(request))
        self._layer.poller.refresh_now()
        return 200, record.to_json()

    async def key_spend(self, request: Request) -> Reply:
        record = await asyncio.to_thread(self._layer.keys.get, request.params["id"])
        rows = await asyncio.to_thread(self._layer.keys.spend, None, request.params["id"])
        return 200, {"key": record.to_json(), "object": "list", "data": rows}

    async def spend(self, request: Request) -> Reply:
        query = request.query()
        periods = [query["period"]] if query.get("period") else current_periods()
        rows = await asyncio.to_thread(self._layer.keys.spend, periods)
        return 200, {"object": "list", "periods": periods, "data": rows}

    # -- guardrails --------------------------------------------------------------------------------------------------

    async def get_guardrails(self, request: Request) -> Reply:
        return 200, {"source": self._layer.guardrails_source, "config": self._layer.guardrails.to_json()}

    async def put_guardrails(self, request: Request) -> Reply:
        body = decode_object(await request.body(_BODY_LIMIT))
        config: GuardrailConfig = parse_config(body, "request body")
        await asyncio.to_thread(self._layer.keys.set_guardrails, config.to_json(), actor(request))
        self._layer.poller.refresh_now()
        return 200, {"source": "admin-api", "config": config.to_json()}

    async def delete_guardrails(self, request: Request) -> Reply:
        await asyncio.to_thread(self._layer.keys.set_guardrails, None, actor(request))
        self._layer.poller.refresh_now()
        return 200, {"source": "file", "config": None}

    # -- audit -------------------------------------------------------------------------------------------------------

    async def audit(self, request: Request) -> Reply:
        query = request.query()
        limit = request.query_int("limit", 100, 1, 1000)
        records = await asyncio.to_thread(self._layer.audit.list, limit, query.get("action"), query.get("target"))
        return 200, {"object": "list", "data": [r.to_json() for r in records]}

    async def verify(self, request: Request) -> Reply:
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
        raise invalid_value("expires_at must include a time zone (e.g. 2027-01-01T00:00:00Z)", "expires_at")
    return at
