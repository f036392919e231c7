"""One exposition from several processes' metrics (``serve --workers N``): what Prometheus would see if the
workers were one process, so that nothing is double counted and nothing is missing whichever worker is scraped.

Counters, histograms and summaries add up sample by sample (same name, same labels). Gauges add up where they
count something each process holds a share of (requests in flight, queued records); the others (an engine's
state, a breaker's ejection, the last reload's outcome) are the same fact seen from every process and take the
largest value. ``_created`` samples are dropped: the sum of start times means nothing.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.utils import floatToGoString

SUMMED_GAUGES = frozenset(
    {
        "modelyard_requests_in_flight",
        "modelyard_engine_requests_in_flight",
        "modelyard_request_log_queue_depth",
        "modelyard_batches_in_flight",
    }
)

Key = tuple[str, tuple[tuple[str, str], ...]]


def merge_expositions(texts: Iterable[bytes]) -> bytes:
    """Merge Prometheus text expositions (version 0.0.4) into one."""
    kinds: dict[str, str] = {}
    docs: dict[str, str] = {}
    values: dict[str, dict[Key, float]] = {}
    for text in texts:
        for family in text_string_to_metric_families(text.decode(errors="replace")):
            kinds.setdefault(family.name, family.type)
            docs.setdefault(family.name, family.documentation)
            samples = values.setdefault(family.name, {})
            summed = family.type != "gauge" or family.name in SUMMED_GAUGES
            for sample in family.samples:
                if sample.name.endswith("_created"):
                    continue
                key = (sample.name, tuple(sorted(sample.labels.items())))
                before = samples.get(key)
                if before is None:
                    samples[key] = sample.value
                else:
                    samples[key] = before + sample.value if summed else max(before, sample.value)
    lines: list[str] = []
    for name, samples in values.items():
        kind = kinds[name]
        header = f"{name}_total" if kind == "counter" else name  # as prometheus_client writes a counter
        lines.append(f"# HELP {header} {_escape_help(docs[name])}")
        lines.append(f"# TYPE {header} {kind if kind != 'unknown' else 'untyped'}")
        for (sample_name, labels), value in samples.items():
            rendered = ",".join(f'{label}="{_escape_label(text)}"' for label, text in labels)
            number = floatToGoString(value)
            lines.append(f"{sample_name}{{{rendered}}} {number}" if rendered else f"{sample_name} {number}")
    return ("\n".join(lines) + "\n").encode() if lines else b""


def _escape_label(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")
