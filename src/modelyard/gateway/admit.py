"""Stage 4, admit — and its exit, settle: the security concept's one place on the request path.

Entry, once the route and its primary target are known: the key's model and region allow-lists, the route's
request limits, input guardrails (which may redact the payload in place), rate limits and budgets; the
``x-ratelimit-*`` headers go on the answer. Exit, when the request is finished whatever its outcome: the real
tokens and cost are charged and the limiter's reservation released. A gateway without a security layer (the
benchmarks' "auth off") has no admission stage at all.
"""

from __future__ import annotations

from modelyard.gateway.exchange import Exchange
from modelyard.gateway.parse import Parsed
from modelyard.routing.model import RouteTarget
from modelyard.security.layer import Admission, SecurityLayer


class Admit:
    def __init__(self, security: SecurityLayer) -> None:
        self._security = security

    async def enter(self, exchange: Exchange, parsed: Parsed, primary: RouteTarget) -> Admission:
        admission = await self._security.admit(
            exchange.grant, parsed.payload, parsed.model, primary.served.name, exchange.request_id, primary.region
        )
        if admission.headers:
            exchange.add_headers(admission.headers)
        return admission

    async def exit(self, exchange: Exchange, admission: Admission) -> None:
        record = exchange.record
        tokens = record.prompt_tokens + record.completion_tokens
        await self._security.settle(admission, tokens, record.cost_usd, record.status)
