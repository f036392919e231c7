"""Where modelyard keeps what it builds (cache) and what it owns (data).

Both honour an explicit environment override first so that tests, CI and containers can point them at a
volume without touching the user's home directory.
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """Rebuildable things: compiled engines, downloaded sources, assembled default model."""
    explicit = os.environ.get("MODELYARD_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "modelyard"


def data_dir() -> Path:
    """Things that must survive: registry database, request logs (later issues)."""
    explicit = os.environ.get("MODELYARD_DATA_DIR")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "modelyard"
