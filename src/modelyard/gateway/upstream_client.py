"""One pooled keep-alive HTTP client for all upstream calls.

A single ``aiohttp`` session per gateway process keeps connections to engines warm, so a request costs no TCP
handshake. There is no total timeout: generations can legitimately run for minutes, and a client that gives up
cancels the call; only connecting is bounded, so a dead engine is detected fast.
"""

from __future__ import annotations

from dataclasses import dataclass

import aiohttp


@dataclass(frozen=True)
class UpstreamClientSettings:
    connect_timeout_s: float = 5.0
    max_connections: int = 1024
    keepalive_timeout_s: float = 60.0


def create_session(settings: UpstreamClientSettings) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(
        limit=settings.max_connections,
        keepalive_timeout=settings.keepalive_timeout_s,
        ttl_dns_cache=None,
    )
    return aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=settings.connect_timeout_s),
        auto_decompress=False,
        skip_auto_headers=("User-Agent", "Accept-Encoding"),
    )
