"""``POST /v1/feedback`` in-process, with real keys, the real request log (record writer process) and SQLite: a
rating joins the arm that served the answer, a second one replaces it, another key is refused, an admin is not,
an unknown id is a 404 and bad input a 400 naming the field; the export turns rated answers into a dataset."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from inprocess import chat, serving
from mock_upstreams import MockUpstream
from modelyard.cli.main import app as cli_app
from modelyard.observability.metrics import GatewayMetrics
from modelyard.observability.request_log_store import RequestLogStore, RequestQuery
from modelyard.roles.stores import open_database
from modelyard.rollouts.tables import FeedbackRow
from modelyard.security.key_store import NewKey
from modelyard.security.keys import ADMIN, INFERENCE, PEPPER_ENV
from modelyard.security.layer import SecurityLayer
from modelyard.security.settings import SecuritySettings


@dataclass
class Keys:
    layer: SecurityLayer
    metrics: GatewayMetrics
    alice: str
    bob: str
    admin: str


@pytest.fixture
def keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Keys]:
    monkeypatch.setenv(PEPPER_ENV, secrets.token_hex(16))
    database = open_database(f"sqlite:///{tmp_path / 'keys.db'}")
    metrics = GatewayMetrics()
    layer = SecurityLayer(database, SecuritySettings(), metrics.registry, 2048)

    def create(name: str, *scopes: str) -> str:
        return layer.keys.create(NewKey(name, scopes=scopes), "test")[1]  # type: ignore[arg-type]

    yield Keys(layer, metrics, create("alice", INFERENCE), create("bob", INFERENCE), create("ops", INFERENCE, ADMIN))
    database.dispose()


async def _stored(path: Path, rows: int) -> None:
    store = RequestLogStore(open_database(f"sqlite:///{path}"))
    try:
        for _ in range(200):
            if len(store.query(RequestQuery(limit=10))) >= rows:
                return
            await asyncio.sleep(0.1)
        raise AssertionError("the request log rows were not written within 20 s")
    finally:
        store.database.dispose()


def _auth(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


def test_feedback_is_per_request_replaced_owned_and_exported(
    keys: Keys, mocks: Callable[..., MockUpstream], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    upstream = mocks()
    shared = tmp_path / "shared.db"  # the request log and the stored state in one database, as in serve

    async def scenario() -> None:
        async with serving(
            {"m": [upstream.url]}, request_log=shared, state=shared, security=keys.layer, metrics=keys.metrics,
            bodies=("*=1",),
        ) as gateway:  # fmt: skip
            client = gateway.client
            answer = await client.post("/v1/chat/completions", json=chat("m", "Rate me"), headers=_auth(keys.alice))
            assert answer.status_code == 200
            request_id = answer.headers["x-request-id"]
            other = await client.post("/v1/chat/completions", json=chat("m"), headers=_auth(keys.bob))
            bob_request = other.headers["x-request-id"]
            await _stored(shared, 2)  # the record writer process may still be starting

            up = await client.post(
                "/v1/feedback", json={"request_id": request_id, "score": "up"}, headers=_auth(keys.alice)
            )
            assert up.status_code == 200, up.text
            body = up.json()
            assert body["object"] == "feedback" and body["score"] == 1.0 and body["raw"] == "up"
            assert (body["route"], body["model"], body["target"]) == ("m", "m", answer.headers["x-modelyard-target"])

            again = await client.post(
                "/v1/feedback", json={"request_id": request_id, "score": 2, "comment": "meh"}, headers=_auth(keys.alice)
            )
            assert again.status_code == 200 and again.json()["score"] == 0.25  # 2 on the default 1..5 scale
            assert again.json()["created_at"] == body["created_at"] and again.json()["comment"] == "meh"

            stolen = await client.post(
                "/v1/feedback", json={"request_id": bob_request, "score": "down"}, headers=_auth(keys.alice)
            )
            assert stolen.status_code == 403 and stolen.json()["error"]["code"] == "not_your_request"
            by_admin = await client.post(
                "/v1/feedback", json={"request_id": bob_request, "score": "down"}, headers=_auth(keys.admin)
            )
            assert by_admin.status_code == 200 and by_admin.json()["score"] == 0.0

            unknown = await client.post(
                "/v1/feedback", json={"request_id": "nope-123", "score": "up"}, headers=_auth(keys.alice)
            )
            assert unknown.status_code == 404 and unknown.json()["error"]["param"] == "request_id"
            for bad, field in (
                ({"score": "up"}, "request_id"),
                ({"request_id": request_id, "score": "meh"}, "score"),
                ({"request_id": request_id, "score": 9}, "score"),
                ({"request_id": request_id, "score": True}, "score"),
                ({"request_id": request_id, "score": "up", "comment": 3}, "comment"),
                ({"request_id": request_id, "score": "up", "rating": 1}, "rating"),
            ):
                refused = await client.post("/v1/feedback", json=bad, headers=_auth(keys.alice))
                assert refused.status_code == 400 and refused.json()["error"]["param"] == field, (bad, refused.text)
            assert (
                await client.post("/v1/feedback", json={"request_id": request_id, "score": "up"})
            ).status_code == 401

    asyncio.run(scenario())
    database = open_database(f"sqlite:///{shared}")
    with database.transaction() as session:
        assert session.execute(select(func.count()).select_from(FeedbackRow)).scalar_one() == 2  # replaced, not added
    database.dispose()

    monkeypatch.setenv("MODELYARD_DATABASE_URL", f"sqlite:///{shared}")
    out = tmp_path / "rated.jsonl"
    result = CliRunner().invoke(cli_app, ["requests", "export", "--feedback", "--out", str(out)])
    assert result.exit_code == 0, result.output
    lines = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    assert len(lines) == 2
    mine = next(line for line in lines if line["comment"] == "meh")
    assert mine["prompt"] == [{"role": "user", "content": "Rate me"}]
    assert mine["messages"][-1]["role"] == "assistant" and mine["answer"] == mine["messages"][-1]["content"]
    assert mine["answer"] and mine["score"] == 0.25 and mine["version"] == "" and mine["model"] == "m"
