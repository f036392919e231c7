"""The engines' own Prometheus metrics (llama-server's ``llamacpp:*``, vLLM's ``vllm:*``), re-exposed on the
gateway's /metrics.

Operators scrape one target per gateway; each engine runs on a private loopback port. At scrape time the gateway
fetches every ready engine's /metrics concurrently (bounded by a short timeout, skipped when an engine does not
answer) and adds ``engine``, ``model`` and ``version`` labels, so engine-side numbers (prompt tokens processed,
KV-cache use, deferred requests) line up with the gateway's own series. Families that several engines share get
one HELP/TYPE header, as the exposition format requires.

Names are prefixed ``modelyard_engine_`` and their colons become underscores (``llamacpp:prompt_tokens_total`` →
``modelyard_engine_llamacpp_prompt_tokens_total``): colons are reserved for recording rules, and the prefix keeps
the engine's series apart from a direct scrape of the engine. An engine's own label that collides with one the
gateway adds (vLLM labels its series ``engine="0"``, its engine-core index) is kept as ``upstream_<name>``.
A family declared ``counter`` whose samples lack the ``_total`` suffix (llama-server's high-water marks) is
re-declared a gauge; one whose samples carry it (vLLM's ``vllm:num_preemptions_total``) stays a counter.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(.*)$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def exported_name(name: str) -> str:
    return "modelyard_engine_" + name.replace(":", "_")


def _rename_colliding(inner: str, ours: Iterable[str]) -> str:
    taken = set(ours)
    if not inner or not any(f"{key}=" in inner for key in taken):
        return inner
    return ",".join(f'{"upstream_" + key if key in taken else key}="{value}"' for key, value in _LABEL.findall(inner))


def relabel(expositions: Iterable[tuple[dict[str, str], str]]) -> bytes:
    """Merge Prometheus text expositions, adding each one's labels to every sample and renaming its metrics."""
    headers: dict[str, list[str]] = {}
    samples: dict[str, list[str]] = {}
    counters: set[str] = set()  # families declared counter without the _total suffix in their name
    counted: set[str] = set()  # ... whose samples do carry it: real counters
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
                        counters.add(family)
                    if not any(h.split(None, 2)[1] == parts[1] for h in headers[family]):
                        headers[family].append(" ".join(["#", parts[1], family, *rest]))
                continue
            match = _SAMPLE.match(line)
            if match is None:
                continue
            name, existing, value = match.groups()
            name = exported_name(name)
            if family in counters and name.startswith(family + "_total"):
                counted.add(family)
            inner = _rename_colliding(existing[1:-1] if existing else "", labels)
            merged = f"{inner},{extra}" if inner and extra else (inner or extra)
            samples.setdefault(family or name, []).append(f"{name}{{{merged}}} {value}")
    lines: list[str] = []
    for family in dict.fromkeys([*headers, *samples]):
        if family in counters and family not in counted:  # e.g. n_tokens_max, a high-water mark
            headers[family] = [
                h.replace(" counter", " gauge") if h.startswith("# TYPE") else h for h in headers[family]
            ]
        lines += headers.get(family, [])
        lines += samples.get(family, [])
    return ("\n".join(lines) + "\n").encode() if lines else b""
