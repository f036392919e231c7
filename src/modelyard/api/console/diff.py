"""A word-level difference of two answers, for shadow pairs shown side by side (a pure function)."""

from __future__ import annotations

import difflib
import re

from modelyard.api.console.html import esc

_TOKENS = re.compile(r"\s+|[^\s]+")


def word_diff(left: str, right: str) -> tuple[str, str]:
    """Both texts as HTML, with what only the left has in ``<del>`` and what only the right has in ``<ins>``."""
    a, b = _TOKENS.findall(left), _TOKENS.findall(right)
    out_left: list[str] = []
    out_right: list[str] = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        before, after = esc("".join(a[i1:i2])), esc("".join(b[j1:j2]))
        if op == "equal":
            out_left.append(before)
            out_right.append(after)
            continue
        if before:
            out_left.append(f"<del>{before}</del>")
        if after:
            out_right.append(f"<ins>{after}</ins>")
    return "".join(out_left), "".join(out_right)
