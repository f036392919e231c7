"""The chart rendered once per session by real Helm, for every values example (``rendering.EXAMPLES``)."""

from __future__ import annotations

from typing import Any

import pytest

from .rendering import EXAMPLES, example_values, render


@pytest.fixture(scope="session")
def rendered() -> dict[str, list[dict[str, Any]]]:
    """Example name → its rendered objects."""
    return {path.stem: render(example_values(path)) for path in EXAMPLES}
