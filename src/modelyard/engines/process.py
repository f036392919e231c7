"""Child-process hygiene for engines: no engine may outlive the gateway that started it.

Engines run in their own session so that a Ctrl-C in the user's terminal reaches only modelyard, which then
drains in-flight requests before stopping the engine itself. ``PR_SET_PDEATHSIG`` covers the case where
modelyard dies without a chance to clean up (SIGKILL, OOM killer): the kernel then kills the engine.
"""

from __future__ import annotations

import ctypes
import signal
import socket
import sys

_PR_SET_PDEATHSIG = 1


def kill_with_parent() -> None:
    """``preexec_fn`` for engine children (Linux only; elsewhere a no-op)."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
