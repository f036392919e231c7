"""Batch API limits and how batch lines share the engines with live traffic."""

from __future__ import annotations

from dataclasses import dataclass

from modelyard.options import Section, at_least, non_negative, option, positive


@dataclass(frozen=True)
class BatchSettings(Section):
    batch_max_file_bytes: int = option(
        64 * 1024 * 1024,
        flag="--batch-max-file-bytes",
        help="Largest accepted upload to POST /v1/files (bytes; 413 above).",
        check=at_least(1024),
    )
    batch_max_lines: int = option(
        50_000, flag="--batch-max-lines", help="Most request lines one batch input file may hold.", check=at_least(1)
    )
    batch_retention_s: float = option(
        30 * 24 * 3600.0,
        flag="--batch-retention",
        help="Seconds files and finished batches are kept.",
        check=positive,
    )
    batch_concurrency: int = option(
        2,
        flag="--batch-concurrency",
        help="Batch lines in flight at once (per gateway running batches).",
        check=at_least(1),
    )
    batch_live_limit: int = option(
        2,
        flag="--batch-live-limit",
        help="A batch line starts only while fewer live requests than this are in flight (spare capacity).",
        check=non_negative,
    )
