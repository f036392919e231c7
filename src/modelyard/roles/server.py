"""The HTTP server every gateway process runs: uvicorn on one pre-bound socket, stopping gracefully.

Shutdown order on SIGTERM / Ctrl-C: stop accepting connections and report not-ready, let in-flight requests
(streams included) finish within the grace period, then stop the engines. A second Ctrl-C skips the wait.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import socket
import threading
from collections.abc import Callable, Generator

import uvicorn

from modelyard.api.app import ModelyardApp
from modelyard.roles.http_protocol import ClientLimits, guarded_protocol
from modelyard.roles.settings import ServerSettings

log = logging.getLogger("modelyard")


class GatewayServer(uvicorn.Server):
    """uvicorn's server, minus re-raising the caught signal after a graceful stop (we exit 0 instead)."""

    def __init__(self, config: uvicorn.Config, on_exit_requested: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_exit_requested = on_exit_requested
        self.exit_code = 0

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        handled = (signal.SIGINT, signal.SIGTERM)
        original = {sig: signal.signal(sig, self.handle_exit) for sig in handled}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)

    def handle_exit(self, sig: int, frame: object) -> None:
        if not self.should_exit:
            log.info(
                "received %s: draining in-flight requests (up to %.0f s), then stopping",
                signal.Signals(sig).name,
                self.config.timeout_graceful_shutdown or 0,
            )
            self._on_exit_requested()
        super().handle_exit(sig, frame)  # type: ignore[arg-type]

    def fail(self, reason: str) -> None:
        log.error("stopping: %s", reason)
        self.exit_code = 1
        self.should_exit = True


class PortInUseError(OSError):
    pass


def bind_listener(
    host: str, port: int, backlog: int = 4096, reuse_port: bool = False, listen: bool = True
) -> socket.socket:
    """Bind before starting anything else, so a taken port is a clear error and not a half-started server.

    ``reuse_port``: ``SO_REUSEPORT``, so the workers of ``serve --workers`` each listen on the same port and the
    kernel spreads new connections over them; ``listen=False`` only reserves the port (the control process
    holds it so that no other program takes it while workers restart; a socket that does not listen gets no
    connections)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise PortInUseError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    if listen:
        sock.listen(backlog)
    return sock  # not inheritable: engines launched later must not hold the gateway's port open


def gateway_config(app: ModelyardApp, server: ServerSettings, log_level: str) -> uvicorn.Config:
    """uvicorn settings of every modelyard gateway (also used by the benchmarks, so they measure the real thing).

    uvloop and httptools are the fastest loop and parser uvicorn has (the parser wrapped to bound what clients may
    send and how slowly); with ``--tls-cert``/``--tls-key`` it serves HTTPS itself. The access log is off because a
    log line per request costs more than the proxying (the request log leaves the hot path through a queue).
    """
    limits = ClientLimits(server.header_timeout_s, server.body_timeout_s, server.max_header_bytes, server.max_headers)
    return uvicorn.Config(
        app,
        host=server.host,
        port=server.port,
        loop="uvloop",
        http=guarded_protocol(limits),  # httptools, with head size and read-time limits (http_protocol.py)
        ssl_certfile=str(server.tls_cert) if server.tls_cert else None,
        ssl_keyfile=str(server.tls_key) if server.tls_key else None,
        lifespan="on",
        access_log=False,
        log_config=None,
        log_level=log_level,
        timeout_graceful_shutdown=int(server.shutdown_grace_s),
        timeout_keep_alive=30,
        backlog=4096,
    )


def serve_app(app: ModelyardApp, server: ServerSettings, log_level: str) -> GatewayServer:
    """The configured server for ``app`` (not yet running: ``run(sockets=[listener])`` runs it)."""
    return GatewayServer(gateway_config(app, server, log_level), on_exit_requested=app.begin_drain)
