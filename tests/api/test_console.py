"""The web console in-process (no browser): sessions, CSRF, revocation, login throttling, pages over the admin API.

The product's runtime over fixed upstreams (``tests/inprocess.py``) with a real key store (SQLite), in front of a
mock OpenAI-compatible upstream; the browser-driven tests are in ``tests/e2e/test_console_browser.py``.
"""

from __future__ import annotations

import asyncio
import re
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from inprocess import Gateway, chat, serving
from mock_upstreams import MockUpstream
from modelyard.api.console.settings import ConsoleSettings
from modelyard.observability.metrics import GatewayMetrics
from modelyard.roles.stores import open_database
from modelyard.security.key_store import NewKey
from modelyard.security.keys import ADMIN, INFERENCE, PEPPER_ENV, READ
from modelyard.security.layer import SecurityLayer
from modelyard.security.settings import SecuritySettings


@dataclass
class Keys:
    layer: SecurityLayer
    metrics: GatewayMetrics
    admin: str
    reader: str
    reader_id: str
    inference: str


@pytest.fixture
def keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Keys]:
    monkeypatch.setenv(PEPPER_ENV, secrets.token_hex(16))
    database = open_database(f"sqlite:///{tmp_path / 'keys.db'}")
    metrics = GatewayMetrics()
    layer = SecurityLayer(database, SecuritySettings(key_poll_s=0.05), metrics.registry)

    def create(name: str, scopes: tuple[str, ...]) -> tuple[str, str]:
        record, secret = layer.keys.create(NewKey(name, scopes=scopes), "test")
        return record.id, secret

    reader_id, reader = create("dash", (READ,))
    yield Keys(layer, metrics, create("ops", (ADMIN,))[1], reader, reader_id, create("app", (INFERENCE,))[1])
    database.dispose()


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "the page has no form token"
    return found.group(1)


async def _login(client: httpx.AsyncClient, key: str) -> httpx.Response:
    return await client.post("/console/login", data={"key": key, "next": "/console/keys"})


def _run(keys: Keys, upstream: MockUpstream, scenario: Callable[[Gateway], object], **settings: object) -> None:
    async def main() -> None:
        console = ConsoleSettings(**settings)  # type: ignore[arg-type]
        async with serving(
            {"m": [upstream.url]}, security=keys.layer, metrics=keys.metrics, console=console
        ) as gateway:
            await scenario(gateway)  # type: ignore[misc]

    asyncio.run(main())


def test_login_gives_an_httponly_strict_cookie_that_holds_nothing_of_the_key(
    keys: Keys, mocks: Callable[..., MockUpstream]
) -> None:
    async def scenario(gateway: Gateway) -> None:
        client = gateway.client
        anonymous = await client.get("/console/overview")
        assert anonymous.status_code == 303 and anonymous.headers["location"] == "/console/login?next=/console/overview"
        login = await _login(client, keys.admin)
        assert login.status_code == 303 and login.headers["location"] == "/console/keys"
        cookie = login.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Max-Age=28800" in cookie
        assert "Secure" not in cookie  # plain HTTP here; under TLS the cookie is Secure
        value = cookie.split(";")[0].split("=", 1)[1]
        assert keys.admin not in value and keys.admin[3:12] not in value
        page = await client.get("/console/keys")
        assert page.status_code == 200 and "Signed in as key <strong>ops</strong>" in page.text
        assert page.headers["cache-control"] == "no-store"
        assert "default-src 'self'" in page.headers["content-security-policy"]

    _run(keys, mocks(), scenario)


def test_wrong_keys_get_a_clear_message_and_are_rate_limited(keys: Keys, mocks: Callable[..., MockUpstream]) -> None:
    async def scenario(gateway: Gateway) -> None:
        client = gateway.client
        wrong = await _login(client, "my-not-a-key")
        assert wrong.status_code == 401 and "That key was not accepted" in wrong.text
        assert "set-cookie" not in wrong.headers
        no_scope = await _login(client, keys.inference)
        assert no_scope.status_code == 401 and "neither the read nor the admin scope" in no_scope.text
        throttled = await _login(client, keys.admin)  # the third try from this address within the minute
        assert throttled.status_code == 429 and "Too many failed logins" in throttled.text
        assert int(throttled.headers["retry-after"]) >= 1

    _run(keys, mocks(), scenario, console_login_failures=2)


def test_changes_need_the_session_csrf_token_and_the_admin_scope(
    keys: Keys, mocks: Callable[..., MockUpstream]
) -> None:
    async def scenario(gateway: Gateway) -> None:
        client = gateway.client
        await _login(client, keys.admin)
        page = await client.get("/console/keys")
        forged = await client.post("/console/keys", data={"name": "x", "scope_read": "on", "csrf": "0" * 32})
        assert forged.status_code == 403 and "did not come from a console page" in forged.text
        other_site = await client.post(
            "/console/keys",
            data={"name": "x", "scope_read": "on", "csrf": _csrf(page.text)},
            headers={"origin": "https://evil.example"},
        )
        assert other_site.status_code == 403
        created = await client.post(
            "/console/keys", data={"name": "ci", "scope_inference": "on", "csrf": _csrf(page.text)}
        )
        assert created.status_code == 201 and "copy its secret now" in created.text
        secret = re.search(r'class="secret-value" tabindex="0">(my-[^<]+)<', created.text)
        assert secret is not None
        for _ in range(100):  # the new key reaches the snapshot with the next poll
            answer = await client.post(
                "/v1/chat/completions", json=chat("m"), headers={"authorization": f"Bearer {secret.group(1)}"}
            )
            if answer.status_code != 401:
                break
            await asyncio.sleep(0.02)
        assert answer.status_code == 200
        audit = await client.get("/console/audit")
        assert "key:ops(" in audit.text and "verified" in audit.text
        # a read key looks, and cannot change anything
        reader = httpx.AsyncClient(transport=client._transport, base_url="http://gateway")
        await _login(reader, keys.reader)
        listing = await reader.get("/console/keys")
        assert "Create a key" not in listing.text
        refused = await reader.post("/console/keys", data={"name": "y", "csrf": _csrf(listing.text)})
        assert refused.status_code == 403 and "lacks the &#x27;admin&#x27; scope" in refused.text
        await reader.aclose()

    _run(keys, mocks(), scenario)


def test_revoking_the_key_ends_its_sessions_and_logout_ends_one(keys: Keys, mocks: Callable[..., MockUpstream]) -> None:
    async def scenario(gateway: Gateway) -> None:
        client = gateway.client
        await _login(client, keys.reader)
        assert (await client.get("/console/routes")).status_code == 200
        keys.layer.keys.revoke(keys.reader_id, "test")  # as another replica would (the key poll notices)
        for _ in range(100):
            ended = await client.get("/console/routes")
            if ended.status_code == 303:
                break
            await asyncio.sleep(0.02)
        assert ended.status_code == 303 and ended.headers["location"].startswith("/console/login")
        assert (await client.get("/console/overview/data")).status_code == 401
        login_page = await client.get(ended.headers["location"])
        assert "Your session ended" in login_page.text and "revoked" in login_page.text
        await _login(client, keys.admin)
        page = await client.get("/console/overview")
        cookie = client.cookies.get("modelyard_console")
        logout = await client.post("/console/logout", data={"csrf": _csrf(page.text)})
        assert logout.status_code == 303 and "Max-Age=0" in logout.headers["set-cookie"]
        client.cookies.set("modelyard_console", cookie or "", path="/console")  # a copy of the cookie kept
        assert (await client.get("/console/overview")).status_code == 303

    _run(keys, mocks(), scenario)


def test_overview_charts_come_from_this_replicas_own_recent_history(
    keys: Keys, mocks: Callable[..., MockUpstream]
) -> None:
    async def scenario(gateway: Gateway) -> None:
        client = gateway.client
        history = gateway.runtime.history
        assert history is not None
        history.sample()
        for _ in range(5):
            answer = await client.post(
                "/v1/chat/completions", json=chat("m"), headers={"authorization": f"Bearer {keys.inference}"}
            )
            assert answer.status_code == 200
        history.sample()
        await _login(client, keys.reader)
        page = await client.get("/console/overview")
        assert "This replica only" in page.text and 'data-feed="/console/overview/data"' in page.text
        data = (await client.get("/console/overview/data")).json()
        assert data["source"] == "memory"
        requests = data["charts"]["requests"]
        assert set(requests) == {"m"} and requests["m"][-1] > 0
        assert data["charts"]["latency"]["p95 m"][-1] > 0
        assert len(data["t"]) == len(requests["m"])

    _run(keys, mocks(), scenario)


def test_every_page_answers_in_words_even_without_a_registry(keys: Keys, mocks: Callable[..., MockUpstream]) -> None:
    async def scenario(gateway: Gateway) -> None:
        client = gateway.client
        await _login(client, keys.admin)
        pages = ("overview", "models", "routes", "rollouts", "requests", "keys", "audit", "shadow")
        for path in (f"/console/{name}" for name in pages):
            page = await client.get(path)
            assert page.headers["content-type"].startswith("text/html"), path
            assert "<h1>" in page.text, path
        models = await client.get("/console/models")
        assert "not available" in models.text  # fixed upstreams: no registry, said in words
        bad_filter = await client.get("/console/requests", params={"status": "abc"})
        assert "<h1>Requests</h1>" in bad_filter.text
        assert (await client.get("/console/assets/console.js")).status_code == 200
        assert (await client.get("/console/assets/..%2Fservice.py")).status_code == 404

    _run(keys, mocks(), scenario)
