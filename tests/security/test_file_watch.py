"""Reloading the guardrails file while serving (security/guardrails/file_watch.py), in-process over the real
security layer, key store (SQLite) and a mock upstream: an edit is enforced within about a second, a corrupt file
is refused with the running configuration kept, logged once and counted, and a good file afterwards applies."""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import secrets
from collections.abc import Callable
from pathlib import Path

import pytest

from inprocess import Gateway, chat, serving
from mock_upstreams import MockUpstream
from modelyard.observability.metrics import GatewayMetrics
from modelyard.roles.stores import open_database
from modelyard.security.keys import PEPPER_ENV
from modelyard.security.layer import SecurityLayer
from modelyard.security.settings import SecuritySettings

BLOCK = 'routes:\n  "*":\n    input: {{blocklist: {{action: block, phrases: ["{phrase}"]}}}}\n'


async def _status(gateway: Gateway, content: str) -> int:
    return (await gateway.client.post("/v1/chat/completions", json=chat("m", content))).status_code


async def _until(check: Callable[[], object], timeout_s: float = 10.0) -> None:
    """Until ``check()`` (a plain or an async callable) is true."""
    for _ in range(int(timeout_s / 0.05)):
        outcome = check()
        if inspect.isawaitable(outcome):
            outcome = await outcome
        if outcome:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("not reached in time")


def test_an_edited_guardrails_file_is_enforced_and_a_corrupt_one_refused(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    mocks: Callable[..., MockUpstream],
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv(PEPPER_ENV, secrets.token_hex(16))
    path = tmp_path / "guardrails.yaml"
    path.write_text(BLOCK.format(phrase="Project Aurora"))
    database = open_database(f"sqlite:///{tmp_path / 'keys.db'}")
    metrics = GatewayMetrics()
    layer = SecurityLayer(database, SecuritySettings(auth=False, guardrails_file=path), metrics.registry, 2048)
    upstream = mocks()

    async def scenario() -> None:
        async with serving({"m": [upstream.url]}, security=layer, metrics=metrics) as gateway:
            assert await _status(gateway, "Tell me about Project Aurora.") == 400
            assert await _status(gateway, "Tell me about Project Borealis.") == 200

            # An editor's save: a new file renamed over the old one.
            fresh = tmp_path / "guardrails.yaml.new"
            fresh.write_text(BLOCK.format(phrase="Project Borealis"))
            os.replace(fresh, path)

            async def borealis_blocked() -> bool:
                return await _status(gateway, "Tell me about Project Borealis.") == 400

            await _until(borealis_blocked)
            assert await _status(gateway, "Tell me about Project Aurora.") == 200
            assert gateway.metric("modelyard_guardrails_reloads_total", result="applied") == 1

            caplog.clear()
            corrupt_files = (
                "routes:\n  '*':\n    input: {blocklist: {action: block, phrases: [",  # cut short
                'routes:\n  "*":\n    input: {blocklist: {acton: block}}\n',  # a misspelt key
                "",  # emptied (what a reader sees mid-save): not "no guardrails"
            )
            for corrupt in corrupt_files:
                path.write_text(corrupt)
                before = gateway.metric("modelyard_guardrails_reloads_total", result="rejected")
                await _until(
                    lambda b=before: gateway.metric("modelyard_guardrails_reloads_total", result="rejected") > b
                )
                await asyncio.sleep(2.5)  # more polls of the same bad text: refused (and logged) once
                assert gateway.metric("modelyard_guardrails_reloads_total", result="rejected") == before + 1
                assert await _status(gateway, "Tell me about Project Borealis.") == 400  # the running one kept
                assert await _status(gateway, "Tell me about Project Aurora.") == 200
                ready = (await gateway.client.get("/ready")).json()
                assert str(path) in ready["security"]["guardrails_file_error"]
            refusals = [r.getMessage() for r in caplog.records if "guardrails file change refused" in r.getMessage()]
            assert len(refusals) == 3
            assert all(r.levelno == logging.ERROR for r in caplog.records if "refused" in r.getMessage())
            assert "acton" in refusals[1]

            path.write_text(BLOCK.format(phrase="Project Aurora"))
            await _until(lambda: "guardrails_file_error" not in layer.describe())
            assert await _status(gateway, "Tell me about Project Aurora.") == 400
            assert await _status(gateway, "Tell me about Project Borealis.") == 200
            assert gateway.metric("modelyard_guardrails_reloads_total", result="applied") == 2

    asyncio.run(asyncio.wait_for(scenario(), 60))
    database.dispose()
