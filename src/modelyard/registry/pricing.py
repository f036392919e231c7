"""Per-model token prices, kept where the model is defined: its registry tags.

``modelyard models register FILE --name M --tag price_input_per_1k=0.0002 --tag price_output_per_1k=0.0008``
(US dollars per 1 000 tokens). The gateway multiplies them with the engine's usage report for the
``modelyard_cost_usd_total`` metric and the request log. A tag that is not a non-negative number is ignored.
"""

from __future__ import annotations

import logging
import math

from modelyard.registry.records import ModelRecord

INPUT_TAG = "price_input_per_1k"
OUTPUT_TAG = "price_output_per_1k"

log = logging.getLogger("modelyard.registry")


def model_prices(model: ModelRecord) -> tuple[float, float]:
    return _price(model, INPUT_TAG), _price(model, OUTPUT_TAG)


def _price(model: ModelRecord, tag: str) -> float:
    raw = model.tags.get(tag)
    if raw is None:
        return 0.0
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not math.isfinite(value) or value < 0:
        log.warning("model %s: tag %s=%r is not a price (USD per 1k tokens); ignored", model.name, tag, raw)
        return 0.0
    return value
