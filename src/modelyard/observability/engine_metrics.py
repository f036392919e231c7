"""The engines' own Prometheus metrics (llama-server's ``llamacpp:*``), re-exposed on the gateway's /metrics.

Operators scrape one target per gateway; each engine runs on a private loopback port. At scrape time the gateway
fetches every ready engine's /metrics concurrently (bounded by a short timeout, skipped when an engine does not
answer) and adds ``engine``, ``model`` and ``version`` labels, so engine-side numbers (prompt tokens processed,
KV-cache use, deferred requests) line up with the gateway's own series. Families that several engines share get
one HELP/TYPE header, as the exposition format requires.

Names are prefixed ``modelyard_engine_`` and their colons become underscores (``llamacpp:prompt_tokens_total`` →
``modelyard_engine_llamacpp_prompt_tokens_total``): colons are reserved for recording rules, and the prefix keeps
the engine's series apart from a direct scrape of the engine.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(.*)$")


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def exported_name(name: str) -> str:
    return "modelyard_engine_" + name.replace(":", "_")


def relabel(expositions: Iterable[tuple[dict[str, str], str]]) -> bytes:
    """Merge Prometheus text expositions, adding each one's labels to every sample and renaming its metrics."""
    headers: dict[str, list[str]] = {}
    samples: dict[str, list[str]] = {}
    for labels, text in expositions:
        extra = ",".join(f'{key}="{_escape(value)}"' for key, value in labels.items())
        family = ""
        for line in text.splitlines():
            if not line.strip():
                continue
            if line.startswith("#"):
                parts = line.split(None, 3)
                if len(parts) >= 3 and parts[1] in ("HELP", "TYPE"):
                    family = exported_name(parts[2])
                    headers.setdefault(family, [])
                    rest = parts[3:]
                    if parts[1] == "TYPE" and rest == ["counter"] and not family.endswith("_total"):
                        rest = ["gauge"]  # e.g. n_tokens_max, a high-water mark declared as a counter
                    if not any(h.split(None, 2)[1] == parts[1] for h in headers[family]):
                        headers[family].append(" ".join(["#", parts[1], family, *rest]))
                continue
            match = _SAMPLE.match(line)
            if match is None:
                continue
            name, existing, value = match.groups()
            name = exported_name(name)
            inner = existing[1:-1] if existing else ""
            merged = f"{inner},{extra}" if inner and extra else (inner or extra)
            samples.setdefault(family or name, []).append(f"{name}{{{merged}}} {value}")
    lines: list[str] = []
    for family in dict.fromkeys([*headers, *samples]):
        lines += headers.get(family, [])
        lines += samples.get(family, [])
    return ("\n".join(lines) + "\n").encode() if lines else b""
