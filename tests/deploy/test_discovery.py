"""Where a stateless gateway finds engines: ``--engine-url`` parsing, DNS expansion into replicas, and the
resolver itself (against the machine's own ``localhost``)."""

from __future__ import annotations

import asyncio
import re

import pytest

from modelyard.deploy.discovery import EngineSource, check_engine_urls, expand, parse_engine_urls, replica_urls, resolve
from modelyard.options import SettingsError


def test_entries_name_a_version_and_its_urls_static_or_by_dns() -> None:
    sources = parse_engine_urls(
        ["gemma:1=http://10.0.0.5:8080/,http://10.0.0.6:8080", "gemma:1=dns+http://engine-gemma-1.ml.svc:8080"]
    )
    assert sources == {
        "gemma:1": (
            EngineSource("gemma:1", "http://10.0.0.5:8080"),
            EngineSource("gemma:1", "http://10.0.0.6:8080"),
            EngineSource("gemma:1", "http://engine-gemma-1.ml.svc:8080", dns=True),
        )
    }
    assert sources["gemma:1"][2].host == "engine-gemma-1.ml.svc" and sources["gemma:1"][2].port == 8080


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ("http://10.0.0.5:8080", "expected NAME:VERSION=URL"),
        ("gemma@production=http://x:1", "expected NAME:VERSION=URL"),  # an engine serves one concrete version
        ("gemma:1=ftp://x:1", "expected an http(s)://host:port"),
        ("gemma:1=dns+", "expected an http(s)://host:port"),
    ],
)
def test_a_wrong_entry_is_refused_naming_it(entry: str, problem: str) -> None:
    with pytest.raises(SettingsError, match=re.escape(problem)):
        parse_engine_urls([entry])
    assert check_engine_urls([entry]) is not None


def test_a_dns_name_becomes_one_replica_per_address_sorted_and_unique() -> None:
    source = EngineSource("gemma:1", "http://engines:8080", dns=True)
    assert expand(source, ["10.0.0.7", "10.0.0.5", "fd00::1", "10.0.0.5"]) == [
        "http://10.0.0.5:8080",
        "http://10.0.0.7:8080",
        "http://[fd00::1]:8080",
    ]
    assert expand(EngineSource("gemma:1", "http://engines:8080"), ["10.0.0.5"]) == ["http://engines:8080"]
    sources = parse_engine_urls(["a:1=dns+http://engines:8080,http://10.0.0.9:8080", "b:2=dns+http://gone:80"])
    # A name that no longer resolves (a Service without ready Pods) contributes no replica, not a stale list.
    assert replica_urls(sources, {"engines": ["10.0.0.5"]}) == {
        "a:1": ["http://10.0.0.5:8080", "http://10.0.0.9:8080"],
        "b:2": [],
    }


def test_the_resolver_answers_the_a_and_aaaa_records_and_nothing_for_an_unknown_name() -> None:
    addresses = asyncio.run(resolve("localhost", 80))
    assert "127.0.0.1" in addresses or "::1" in addresses
    assert asyncio.run(resolve("no-such-host.invalid", 80)) == []
