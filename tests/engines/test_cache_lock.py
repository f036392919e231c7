"""The cache lock: a second holder waits until the first lets go (two opens of the lock file, as two processes)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from modelyard.engines.cache_lock import exclusive


def test_a_second_holder_waits_for_the_first(tmp_path: Path) -> None:
    lock = tmp_path / "nested" / ".step.lock"
    order: list[str] = []

    def second() -> None:
        with exclusive(lock):
            order.append("second")

    with exclusive(lock):
        waiter = threading.Thread(target=second)
        waiter.start()
        time.sleep(0.3)
        order.append("first done")
    waiter.join(timeout=5)
    assert order == ["first done", "second"]
