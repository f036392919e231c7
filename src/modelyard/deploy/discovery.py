"""Where a stateless gateway finds the engines of each registry version: a static list of URLs, or a DNS name
whose A/AAAA records are the replicas (a Kubernetes headless Service), re-resolved periodically.

``--engine-url gemma-3-270m:1=http://10.0.0.5:8080,http://10.0.0.6:8080`` names two replicas;
``--engine-url gemma-3-270m:1=dns+http://engine-gemma-3-270m-1.ml.svc:8080`` names as many as the name has
addresses. Parsing and expansion are pure; :func:`resolve` is the one I/O (the event loop's resolver).
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from modelyard.options import SettingsError

DNS_PREFIX = "dns+"
_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]*:[1-9][0-9]*$")


@dataclass(frozen=True)
class EngineSource:
    """One configured engine address of a version: a URL as it is, or a name to resolve into replicas."""

    key: str  # the registry version it serves, ``name:version``
    url: str  # without the ``dns+`` prefix
    dns: bool = False

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or ""

    @property
    def port(self) -> int:
        parts = urlsplit(self.url)
        return parts.port or (443 if parts.scheme == "https" else 80)


def parse_engine_urls(entries: Iterable[str]) -> dict[str, tuple[EngineSource, ...]]:
    """``KEY=URL[,URL…]`` entries → sources by version key (a key given twice gets all its URLs)."""
    found: dict[str, list[EngineSource]] = {}
    for entry in entries:
        key, sep, urls = entry.partition("=")
        key = key.strip()
        if not sep or not _KEY.match(key):
            raise SettingsError(f"expected NAME:VERSION=URL[,URL...], got {entry!r}")
        for raw in urls.split(","):
            url = raw.strip()
            dns = url.startswith(DNS_PREFIX)
            url = url.removeprefix(DNS_PREFIX).rstrip("/")
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise SettingsError(f"{key}: expected an http(s)://host:port or dns+http://name:port URL, got {raw!r}")
            found.setdefault(key, []).append(EngineSource(key, url, dns))
    return {key: tuple(sources) for key, sources in found.items()}


def check_engine_urls(entries: Sequence[str]) -> str | None:
    """The settings check of ``--engine-url``."""
    try:
        parse_engine_urls(entries)
    except SettingsError as exc:
        return str(exc)
    return None


def expand(source: EngineSource, addresses: Iterable[str]) -> list[str]:
    """The replica URLs of a source: itself, or one per resolved address (IPv6 in brackets), sorted and unique
    so that an unchanged answer in another order is no change."""
    if not source.dns:
        return [source.url]
    parts = urlsplit(source.url)
    urls = set()
    for address in addresses:
        host = f"[{address}]" if ipaddress.ip_address(address).version == 6 else address
        urls.add(parts._replace(netloc=f"{host}:{source.port}").geturl())
    return sorted(urls)


def replica_urls(
    sources: Mapping[str, tuple[EngineSource, ...]], resolved: Mapping[str, Sequence[str]]
) -> dict[str, list[str]]:
    """Version key → its replica URLs now, given what each DNS name resolved to (a name that did not resolve
    contributes none, so a Service with no ready Pods has no replicas rather than a stale list)."""
    urls: dict[str, list[str]] = {}
    for key, entries in sources.items():
        found: list[str] = []
        for source in entries:
            found += expand(source, resolved.get(source.host, ()))
        urls[key] = sorted(set(found))
    return urls


async def resolve(host: str, port: int) -> list[str]:
    """The A and AAAA records of ``host`` (an empty list when it does not resolve)."""
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        return []
    return sorted({str(info[4][0]) for info in infos})
