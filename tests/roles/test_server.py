"""The gateway's HTTP server settings (roles/server.py): HTTPS served directly with ``--tls-cert``/``--tls-key``."""

from __future__ import annotations

import asyncio
import ssl
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from modelyard.options import SettingsError
from modelyard.roles.server import bind_listener, serve_app
from modelyard.roles.settings import ServerSettings


class Hello:
    """An ASGI app that says hello (and takes part in the lifespan protocol, as the gateway's app does)."""

    def begin_drain(self) -> None:
        pass

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": scope["scheme"].encode()})


def _certificate(folder: Path) -> tuple[Path, Path]:
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1"),
            *("-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def test_tls_cert_and_key_serve_https(tmp_path: Path) -> None:
    cert, key = _certificate(tmp_path)
    settings = ServerSettings(tls_cert=cert, tls_key=key)  # the port is the pre-bound listener's
    listener = bind_listener("127.0.0.1", 0)
    port = listener.getsockname()[1]
    server = serve_app(Hello(), settings, "warning")  # type: ignore[arg-type]

    async def scenario() -> None:
        running = asyncio.create_task(server.serve(sockets=[listener]))
        while not server.started:  # noqa: ASYNC110 - uvicorn offers no event for "started"
            await asyncio.sleep(0.01)
        try:
            async with httpx.AsyncClient(verify=ssl.create_default_context(cafile=str(cert))) as client:
                answer = await client.get(f"https://127.0.0.1:{port}/")
                assert answer.status_code == 200 and answer.text == "https"
                with pytest.raises(httpx.HTTPError):  # plain HTTP is not spoken on that port
                    await client.get(f"http://127.0.0.1:{port}/", timeout=3)
        finally:
            server.should_exit = True
            await running

    asyncio.run(asyncio.wait_for(scenario(), 30))


def test_tls_cert_and_key_go_together(tmp_path: Path) -> None:
    cert, _ = _certificate(tmp_path)
    with pytest.raises(SettingsError, match="go together"):
        ServerSettings(tls_cert=cert)
    with pytest.raises(SettingsError, match="does not exist"):
        ServerSettings(tls_cert=cert, tls_key=tmp_path / "missing.pem")
