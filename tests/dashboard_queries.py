"""The shipped Grafana dashboard and alert rules, read the way an installed modelyard exposes them, and the
dashboard's queries with Grafana's template variables filled in so Prometheus can run them."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Any

DASHBOARD = "dashboards/modelyard.json"
ALERTS = "alerts/modelyard-alerts.yml"
VARIABLES = ("instance", "model", "route", "version")  # the dashboard's query variables, besides the data source
REQUEST_LOG_PREFIX = "modelyard_request_log_"  # metrics that exist only once the request log is in the gateway
VLLM_PREFIX = "modelyard_engine_vllm_"  # metrics that exist only while a vLLM engine serves
# Families a gateway exports only when it has that part: their panels are checked wherever the family is present.
CONDITIONAL_PREFIXES = (REQUEST_LOG_PREFIX, VLLM_PREFIX)
RATE_INTERVAL = "1m"  # what the tests put for Grafana's $__rate_interval (4 scrapes of 1 s is its floor)
ALL = ".*"  # the dashboard's allValue: what Grafana sends when "All" is selected

_VARIABLE = re.compile(r"\$(?:\{(\w+)\}|(\w+))")
_METRIC = re.compile(r"\b(modelyard_\w+|up)\b(?:\{([^}]*)\})?")
_REGEX_SPECIAL = set("\\^$.|?*+()[]{}")


def shipped(name: str) -> Traversable:
    """A file inside the installed package (``importlib.resources``), as docs/observability.md tells users."""
    return resources.files("modelyard.observability").joinpath(name)


def dashboard() -> dict[str, Any]:
    return json.loads(shipped(DASHBOARD).read_text(encoding="utf-8"))


def alert_rules_text() -> str:
    return shipped(ALERTS).read_text(encoding="utf-8")


@dataclass(frozen=True)
class PanelQuery:
    panel: str
    ref_id: str
    expr: str

    def __str__(self) -> str:
        return f"{self.panel!r} {self.ref_id}"

    def metrics(self) -> set[str]:
        return {match.group(1) for match in _METRIC.finditer(self.expr)}

    def selectors(self) -> list[tuple[str, str]]:
        """(metric, label matchers between the braces) for every metric the query reads."""
        return [(m.group(1), m.group(2) or "") for m in _METRIC.finditer(self.expr)]

    @property
    def needs_request_log(self) -> bool:
        return any(name.startswith(REQUEST_LOG_PREFIX) for name in self.metrics())

    def families(self) -> set[str]:
        """The conditional families (``CONDITIONAL_PREFIXES``) this query reads."""
        return {p for p in CONDITIONAL_PREFIXES for name in self.metrics() if name.startswith(p)}


def panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel that shows data (rows are layout), including panels inside collapsed rows."""
    found = []
    for panel in board["panels"]:
        if panel["type"] == "row":
            found.extend(panel.get("panels", []))
        else:
            found.append(panel)
    return found


def panel_queries(board: dict[str, Any]) -> list[PanelQuery]:
    return [PanelQuery(p["title"], t["refId"], t["expr"]) for p in panels(board) for t in p["targets"]]


def grafana_regex_escape(value: str) -> str:
    """How Grafana puts one selected value of a multi-value variable into a PromQL regex matcher: regex
    metacharacters escaped, and the backslash doubled because it sits in a PromQL string literal."""
    return "".join("\\\\" + c if c in _REGEX_SPECIAL else c for c in value)


def substitute(expr: str, values: dict[str, str]) -> str:
    """Fill in the template variables as Grafana would; an unknown variable is a test failure, not a pass-through."""

    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name == "__rate_interval":
            return RATE_INTERVAL
        if name not in values:
            raise KeyError(f"dashboard query uses ${name}, which the test does not know: {expr}")
        return values[name]

    return _VARIABLE.sub(replace, expr)
