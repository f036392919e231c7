"""The door and the admission stage in-process (api/app.py's authentication, gateway/admit.py over the security
layer): keys and scopes, model allow-lists, rate limits with their headers, input and output guardrails, and
settlement of what each key spent — with the real key store and audit log on SQLite."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest

from inprocess import chat, serving
from mock_upstreams import MockUpstream
from modelyard.observability.metrics import GatewayMetrics
from modelyard.observability.request_log_store import RequestLogStore
from modelyard.observability.request_query import build_query
from modelyard.roles.stores import open_database
from modelyard.security.key_store import NewKey
from modelyard.security.keys import ADMIN, INFERENCE, PEPPER_ENV, READ, KeyLimits
from modelyard.security.layer import SecurityLayer
from modelyard.security.settings import SecuritySettings

GUARDRAILS = """
routes:
  "*":
    input: {pii: {action: redact}, secrets: {action: block}}
    limits: {max_messages: 4, max_tokens: 64}
  guarded:
    input: {pii: {action: redact}}
    output: {blocklist: {action: block, phrases: ["tok tok"]}, hold_back_chars: 16}
"""


@dataclass
class Keys:
    layer: SecurityLayer
    metrics: GatewayMetrics
    inference: str
    reader: str
    admin: str
    limited: str
    narrow: str
    inference_id: str


@pytest.fixture
def keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Keys]:
    monkeypatch.setenv(PEPPER_ENV, secrets.token_hex(16))
    guardrails = tmp_path / "guardrails.yaml"
    guardrails.write_text(GUARDRAILS)
    database = open_database(f"sqlite:///{tmp_path / 'keys.db'}")
    metrics = GatewayMetrics()
    layer = SecurityLayer(database, SecuritySettings(guardrails_file=guardrails), metrics.registry, 2048)

    def create(name: str, scopes: tuple[str, ...], **extra: object) -> tuple[str, str]:
        record, secret = layer.keys.create(NewKey(name, scopes=scopes, **extra), "test")  # type: ignore[arg-type]
        return record.id, secret

    inference_id, inference = create("app", (INFERENCE,))
    yield Keys(
        layer,
        metrics,
        inference,
        create("dash", (READ,))[1],
        create("ops", (ADMIN,))[1],
        create("metered", (INFERENCE,), limits=KeyLimits(rpm=2))[1],
        create("narrow", (INFERENCE,), models=("other-*",))[1],
        inference_id,
    )
    database.dispose()


def _auth(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


def test_keys_and_scopes_are_checked_at_the_door(keys: Keys, mocks: Callable[..., MockUpstream]) -> None:
    upstream = mocks()

    async def scenario() -> None:
        async with serving({"m": [upstream.url]}, security=keys.layer, metrics=keys.metrics) as gateway:
            client = gateway.client
            missing = await client.post("/v1/chat/completions", json=chat("m"))
            assert missing.status_code == 401 and missing.json()["error"]["code"] == "invalid_api_key"
            wrong = await client.post("/v1/chat/completions", json=chat("m"), headers=_auth("my-nope"))
            assert wrong.status_code == 401 and "Incorrect API key" in wrong.json()["error"]["message"]
            ok = await client.post("/v1/chat/completions", json=chat("m"), headers=_auth(keys.inference))
            assert ok.status_code == 200
            by_header = await client.post("/v1/chat/completions", json=chat("m"), headers={"x-api-key": keys.inference})
            assert by_header.status_code == 200
            reader = await client.post("/v1/chat/completions", json=chat("m"), headers=_auth(keys.reader))
            assert reader.status_code == 403 and reader.json()["error"]["code"] == "insufficient_scope"
            assert (await client.get("/admin/keys", headers=_auth(keys.reader))).status_code == 200
            refused = await client.post("/admin/keys", json={"name": "x"}, headers=_auth(keys.reader))
            assert refused.status_code == 403
            assert (await client.get("/health")).status_code == 200  # probes need no key
            assert (await client.get("/metrics")).status_code == 200
            assert gateway.metric("modelyard_auth_failures_total", code="invalid_api_key") == 2

    asyncio.run(scenario())


def test_model_allow_lists_and_rate_limits_refuse_before_the_engine(
    keys: Keys, mocks: Callable[..., MockUpstream]
) -> None:
    upstream = mocks()

    async def scenario() -> None:
        async with serving({"m": [upstream.url]}, security=keys.layer, metrics=keys.metrics) as gateway:
            client = gateway.client
            narrow = await client.post("/v1/chat/completions", json=chat("m"), headers=_auth(keys.narrow))
            assert narrow.status_code == 403
            assert narrow.json()["error"]["code"] == "model_not_allowed" and narrow.json()["error"]["param"] == "model"
            answers = [
                await client.post("/v1/chat/completions", json=chat("m"), headers=_auth(keys.limited)) for _ in range(3)
            ]
            assert [a.status_code for a in answers] == [200, 200, 429]
            assert answers[0].headers["x-ratelimit-limit-requests"] == "2"
            assert answers[1].headers["x-ratelimit-remaining-requests"] == "0"
            limited = answers[2]
            assert limited.json()["error"]["code"] == "rate_limit_exceeded" and "retry-after" in limited.headers
            assert "x-modelyard-attempts" not in limited.headers  # refused before any upstream call
            too_many = await client.post(
                "/v1/chat/completions", json=chat("m", max_tokens=500), headers=_auth(keys.inference)
            )
            assert too_many.status_code == 400 and too_many.json()["error"]["code"] == "max_tokens_exceeded"

    asyncio.run(scenario())


def test_a_request_without_max_tokens_gets_the_route_cap(keys: Keys, mocks: Callable[..., MockUpstream]) -> None:
    """The cap (64 on every route here) bounds the answer of a request that names no count: the engine (this one
    writes 500 tokens when not told) is sent ``max_tokens: 64``."""
    upstream = mocks("--tokens", "500")

    async def scenario() -> None:
        async with serving({"m": [upstream.url]}, security=keys.layer, metrics=keys.metrics) as gateway:
            body = {"model": "m", "messages": [{"role": "user", "content": "Say hi."}]}
            answer = await gateway.client.post("/v1/chat/completions", json=body, headers=_auth(keys.inference))
            assert answer.status_code == 200 and answer.json()["usage"]["completion_tokens"] == 64
            named = await gateway.client.post(
                "/v1/chat/completions", json={**body, "max_tokens": 5}, headers=_auth(keys.inference)
            )
            assert named.json()["usage"]["completion_tokens"] == 5  # a count under the cap is the request's own

    asyncio.run(scenario())


def test_input_guardrails_redact_before_the_engine_and_block_secrets(
    keys: Keys, mocks: Callable[..., MockUpstream], tmp_path: Path
) -> None:
    upstream = mocks()
    db = tmp_path / "requests.db"

    async def scenario() -> None:
        async with serving(
            {"m": [upstream.url]}, security=keys.layer, metrics=keys.metrics, request_log=db, bodies=("*=1",)
        ) as gateway:
            client = gateway.client
            pii = chat("m", "Mail me at jane.doe@example.com please")
            answer = await client.post(
                "/v1/chat/completions", json=pii, headers={**_auth(keys.inference), "x-request-id": "pii"}
            )
            assert answer.status_code == 200
            secret = chat("m", "my key is AKIAIOSFODNN7EXAMPLE")
            blocked = await client.post("/v1/chat/completions", json=secret, headers=_auth(keys.inference))
            assert blocked.status_code == 400 and blocked.json()["error"]["code"] == "guardrail_blocked"

    asyncio.run(scenario())
    rows = RequestLogStore(open_database(f"sqlite:///{db}")).query(build_query({"bodies": "true"}))
    logged = next(row for row in rows if row["request_id"] == "pii")
    sent = orjson.loads(logged["request_body"])["messages"][0]["content"]
    assert sent == "Mail me at [REDACTED:EMAIL] please"  # what the engine received, and what was logged


def test_output_guardrails_withhold_a_whole_answer_and_cut_a_stream(
    keys: Keys, mocks: Callable[..., MockUpstream]
) -> None:
    upstream = mocks()

    async def scenario() -> None:
        async with serving({"guarded": [upstream.url]}, security=keys.layer, metrics=keys.metrics) as gateway:
            client = gateway.client
            whole = await client.post(
                "/v1/chat/completions", json=chat("guarded", max_tokens=6), headers=_auth(keys.inference)
            )
            assert whole.status_code == 400 and whole.json()["error"]["code"] == "output_blocked"
            stream = await client.post(
                "/v1/chat/completions", json=chat("guarded", max_tokens=6, stream=True), headers=_auth(keys.inference)
            )
            assert stream.status_code == 200
            text = "".join(
                orjson.loads(e[6:])["choices"][0]["delta"].get("content") or ""
                for e in stream.text.split("\n\n")
                if e.startswith("data: {") and '"choices":[{' in e
            )
            assert "tok tok" not in text and '"output_blocked"' in stream.text
            assert gateway.metric("modelyard_guardrail_hits_total", direction="output", action="block") == 2

    asyncio.run(scenario())


def test_what_each_key_used_is_settled_and_admin_changes_are_audited_as_the_key(
    keys: Keys, mocks: Callable[..., MockUpstream]
) -> None:
    upstream = mocks()

    async def scenario() -> None:
        async with serving({"m": [upstream.url]}, security=keys.layer, metrics=keys.metrics) as gateway:
            for _ in range(3):
                answer = await gateway.client.post(
                    "/v1/chat/completions", json=chat("m", max_tokens=5), headers=_auth(keys.inference)
                )
                assert answer.status_code == 200
            changed = await gateway.client.put(
                "/admin/guardrails",
                json={"routes": {"*": {"limits": {"max_messages": 2}}}},
                headers={**_auth(keys.admin), "x-modelyard-actor": "alice"},
            )
            assert changed.status_code == 200, changed.text
            bad = await gateway.client.put(
                "/admin/guardrails", json={"routes": {"*": {"limits": {"max_mesages": 2}}}}, headers=_auth(keys.admin)
            )
            assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_value"

    asyncio.run(scenario())
    spent = keys.layer.keys.spend(None, keys.inference_id)
    assert sum(row["requests"] for row in spent) == 6  # 3 requests in the day's and the month's period
    assert all(row["tokens"] > 0 for row in spent)
    record = keys.layer.audit.list(10, "guardrails.update", None)[0]
    assert record.actor.startswith("key:ops(") and record.actor.endswith(" as alice")
