"""One process at a time for a step that fills the shared cache (a private environment, a conversion).

Several gateways, test workers or a CI job beside a developer's shell may start the same step at once; without the
lock, one would clear the environment another is installing into. ``flock`` is released by the kernel when the
holder dies, so a crashed step never leaves the cache locked.
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def exclusive(lock_path: Path) -> Iterator[None]:
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
