"""The shipped dashboard and alert rules against the real thing: a real Prometheus scraping a real gateway that
serves two real versions (the default model as production, a Q2_K variant as canary, prices tagged so cost is
counted), fed real traffic through llama-server.

Every panel query of the shipped dashboard is run on Prometheus with the template variables filled in the way
Grafana fills them, once for "All" and once for one selected version, and must return data. The gateway's
/metrics passes ``promtool check metrics``; Prometheus loads the shipped rules and evaluates each one without
error; and the engine-down alert stays quiet for a version retired by an alias move, which keeps its last
``modelyard_engine_up 0``.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from importlib.resources import as_file
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from modelyard.engines.llamacpp_build import EngineBuild

from conftest import MODEL
from dashboard_queries import (
    ALERTS,
    ALL,
    CONDITIONAL_PREFIXES,
    REQUEST_LOG_PREFIX,
    VARIABLES,
    PanelQuery,
    dashboard,
    grafana_regex_escape,
    panel_queries,
    shipped,
    substitute,
)
from gateway_process import GatewayProcess
from prometheus_process import JOB, PrometheusProcess

pytestmark = [pytest.mark.engine, pytest.mark.slow]

CANARY = f"{MODEL}@canary"
V1_ENGINE, V2_ENGINE = f"{MODEL}:1", f"{MODEL}:2"
RULE_GROUPS = {
    "modelyard-gateway",
    "modelyard-latency",
    "modelyard-engines",
    "modelyard-request-log",
    "modelyard-drift",
}


def modelyard(data_dir: Path, *args: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "modelyard", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "MODELYARD_DATA_DIR": str(data_dir)},
    )
    assert result.returncode == 0, f"modelyard {' '.join(args)}: {result.stderr}"


@pytest.fixture(scope="module")
def canary_gateway(
    tmp_path_factory: pytest.TempPathFactory, engine_build: EngineBuild, default_model_path: Path
) -> Iterator[GatewayProcess]:
    """Production :1 (priced) and canary :2, each on its own llama-server."""
    data_dir = tmp_path_factory.mktemp("prometheus-gateway")
    prices = ("--tag", "price_input_per_1k=0.001", "--tag", "price_output_per_1k=0.002")
    modelyard(data_dir, "models", "register", str(default_model_path), "--name", MODEL, *prices)
    modelyard(data_dir, "models", "quantize", MODEL, "--type", "Q2_K")
    modelyard(data_dir, "models", "alias", MODEL, "canary", "2")
    process = GatewayProcess(
        data_dir, "--parallel", "2", "--ctx-size", "2048", "--registry-poll", "0.2", "--drain-timeout", "5"
    )
    try:
        process.wait_ready()
        assert {e["name"] for e in process.ready_info()["engines"]} == {V1_ENGINE, V2_ENGINE}
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory, canary_gateway: GatewayProcess) -> Iterator[PrometheusProcess]:
    with as_file(shipped(ALERTS)) as rules:
        server = PrometheusProcess(tmp_path_factory.mktemp("prometheus"), f"127.0.0.1:{canary_gateway.port}", [rules])
        try:
            server.wait_ready()
            server.wait_for(lambda: server.scalar(f'up{{job="{JOB}"}}') == 1, "the first scrape of the gateway")
            yield server
        finally:
            server.stop()


def _gateway_total(canary_gateway: GatewayProcess) -> float:
    text = httpx.get(canary_gateway.url + "/metrics", timeout=5).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "modelyard_requests_total"
    )


def _send_wave(canary_gateway: GatewayProcess) -> None:
    """One round of real traffic: JSON and streamed answers on both versions, an unknown model (404) and a prompt
    longer than the canary's context (the engine refuses it: a 4xx error with the version's labels)."""
    url = canary_gateway.url
    common = {"max_tokens": 4, "ignore_eos": True}  # exactly 4 tokens: time per output token needs at least 2
    chat = {"messages": [{"role": "user", "content": "Say hello"}], **common}
    completion = {"prompt": "One, two, three,", **common}
    for model in (MODEL, CANARY):
        response = httpx.post(f"{url}/v1/chat/completions", json={"model": model, **chat}, timeout=60)
        assert response.status_code == 200, response.text
        assert response.json()["usage"]["completion_tokens"] == 4
        response = httpx.post(f"{url}/v1/completions", json={"model": model, **completion}, timeout=60)
        assert response.status_code == 200, response.text
        for endpoint, body in (("chat/completions", chat), ("completions", completion)):
            payload = {"model": model, "stream": True, **body}
            with httpx.stream("POST", f"{url}/v1/{endpoint}", json=payload, timeout=60) as stream:
                assert stream.status_code == 200
                assert b"[DONE]" in b"".join(stream.iter_raw())
    missing = httpx.post(f"{url}/v1/chat/completions", json={"model": "no-such-model", **chat}, timeout=10)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "model_not_found"
    # Digits are one token each: ~3 000 tokens that the gateway's characters/4 context estimate (750) lets through,
    # so it is the engine that refuses them (prose this long is refused by the gateway's own pre-check).
    too_long = httpx.post(
        f"{url}/v1/completions", json={"model": CANARY, "prompt": "1234567890" * 300, "max_tokens": 4}, timeout=60
    )
    assert too_long.status_code == 400 and too_long.json()["error"]["code"] == "engine_rejected_request"


@dataclass(frozen=True)
class Traffic:
    at: float  # a moment when Prometheus holds both waves: queries are evaluated there, however slow the test is
    metric_names: frozenset[str]  # the series names the gateway exported


@pytest.fixture(scope="module")
def traffic(canary_gateway: GatewayProcess, prometheus: PrometheusProcess) -> Traffic:
    """Two waves, each waited for in Prometheus: series born in the first wave have a rate in the second."""
    for _ in range(2):
        _send_wave(canary_gateway)
        total = _gateway_total(canary_gateway)
        prometheus.wait_for(
            lambda total=total: prometheus.scalar("sum(modelyard_requests_total)") == total,
            f"Prometheus to scrape {total} requests",
        )
    at = time.time()
    text = httpx.get(canary_gateway.url + "/metrics", timeout=5).text
    names = frozenset(s.name for f in text_string_to_metric_families(text) for s in f.samples)
    return Traffic(at, names)


def _check_queries(
    prometheus: PrometheusProcess, traffic: Traffic, values: dict[str, str]
) -> tuple[list[tuple[PanelQuery, list[dict[str, Any]]]], list[str]]:
    """Run every panel query; return the results and every failure (all of them, not just the first)."""
    failures: list[str] = []
    results = []
    for query in panel_queries(dashboard()):
        if query.families() - _families_in(traffic):
            continue  # e.g. no vLLM engine behind this gateway; wherever the family is exported, it is checked
        expr = substitute(query.expr, values)
        try:
            result = prometheus.query(expr, at=traffic.at)
        except AssertionError as exc:
            failures.append(f"{query}: {exc}")
            continue
        if not any(math.isfinite(float(series["value"][1])) for series in result):
            failures.append(f"{query}: no series with a value ({result})\n{expr}")
        results.append((query, result))
    print(f"\n{len(results) - len(failures)} of {len(panel_queries(dashboard()))} panel queries returned data")
    return results, failures


def _families_in(traffic: Traffic) -> set[str]:
    """The conditional families the gateway exports any metric of: then every panel of that family must have data
    (so a renamed request-log metric fails here instead of leaving its panel silently unchecked)."""
    return {p for p in CONDITIONAL_PREFIXES if any(name.startswith(p) for name in traffic.metric_names)}


def test_gateway_metrics_pass_promtool_check_metrics(canary_gateway: GatewayProcess, traffic: Traffic) -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: `make setup` installs Debian's prometheus package"
    exposition = httpx.get(canary_gateway.url + "/metrics", timeout=5).text
    assert "modelyard_time_per_output_token_seconds_bucket" in exposition  # the traffic reached every family
    result = subprocess.run([promtool, "check", "metrics"], input=exposition, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "" and result.stderr.strip() == "", result.stdout + result.stderr


def test_every_dashboard_panel_returns_data_for_all(prometheus: PrometheusProcess, traffic: Traffic) -> None:
    results, failures = _check_queries(prometheus, traffic, dict.fromkeys(VARIABLES, ALL))
    assert not failures, "\n\n".join(failures)
    checked = {(q.panel, q.ref_id) for q, _ in results}
    for query in panel_queries(dashboard()):
        assert (query.panel, query.ref_id) in checked or query.families() - _families_in(traffic)
    assert REQUEST_LOG_PREFIX in _families_in(traffic)  # this gateway keeps the request log: its panels count
    by_panel = {q.panel: r for q, r in results}
    versions = {s["metric"].get("version") for s in by_panel["Requests / s by version"]}
    assert {"1", "2"} <= versions  # the canary comparison shows both versions side by side
    errors = {s["metric"]["error_type"] for s in by_panel["Errors by type"]}
    assert {"model_not_found", "engine_rejected_request"} <= errors
    cost = {s["metric"].get("version", ""): float(s["value"][1]) for s in by_panel["Cost per hour by model version"]}
    assert cost["1"] > 0 and cost["2"] > 0


def test_dashboard_panels_follow_the_selected_version(
    canary_gateway: GatewayProcess, prometheus: PrometheusProcess, traffic: Traffic
) -> None:
    """One model, one gateway and only the canary version selected: every panel still has data, and none shows
    another version, model or gateway (a query that forgot a variable would)."""
    instance = f"127.0.0.1:{canary_gateway.port}"
    values = {
        "instance": grafana_regex_escape(instance),
        "model": grafana_regex_escape(MODEL),
        "route": ALL,
        "version": "2",
    }
    results, failures = _check_queries(prometheus, traffic, values)
    assert not failures, "\n\n".join(failures)
    wanted = {"instance": instance, "model": MODEL, "version": "2"}
    for query, result in results:
        for series in result:
            for label, value in wanted.items():
                assert series["metric"].get(label, value) == value, f"{query} shows {series['metric']}"
            if "engine" in series["metric"]:
                assert series["metric"]["engine"] == V2_ENGINE, f"{query} shows {series['metric']}"
            if "route" in series["metric"]:
                assert series["metric"]["route"] in (CANARY, V2_ENGINE), f"{query} shows {series['metric']}"


def test_dashboard_variables_list_the_served_models_routes_and_versions(
    canary_gateway: GatewayProcess, prometheus: PrometheusProcess, traffic: Traffic
) -> None:
    variables = {v["name"]: v for v in dashboard()["templating"]["list"]}
    found = {}
    for name in VARIABLES:
        metric, label = variables[name]["definition"].removeprefix("label_values(").removesuffix(")").rsplit(", ", 1)
        assert label == name
        found[name] = prometheus.label_values(label, substitute(metric, dict.fromkeys(VARIABLES, ALL)))
    assert found["instance"] == {f"127.0.0.1:{canary_gateway.port}"}
    assert found["model"] == {MODEL, "_unknown"}
    assert {MODEL, CANARY} <= found["route"]
    assert {"1", "2"} <= found["version"]


def test_prometheus_loads_and_evaluates_every_shipped_rule(prometheus: PrometheusProcess, traffic: Traffic) -> None:
    def evaluated_after_traffic() -> list[dict[str, Any]]:
        groups = prometheus.rule_groups()
        rules = [rule for group in groups for rule in group["rules"]]
        if all(_timestamp(rule["lastEvaluation"]) > traffic.at for rule in rules):
            return groups
        return []

    groups = prometheus.wait_for(evaluated_after_traffic, "every rule to be evaluated after the traffic")
    assert {group["name"] for group in groups} == RULE_GROUPS
    rules = [rule for group in groups for rule in group["rules"]]
    assert len(rules) >= 10
    for rule in rules:
        assert rule["type"] == "alerting", rule["name"]
        assert rule["health"] == "ok", f"{rule['name']}: {rule.get('lastError')}"
        assert rule["labels"]["severity"] in ("critical", "warning"), rule["name"]
        assert {"summary", "description", "runbook"} <= set(rule["annotations"]), rule["name"]
        assert rule["duration"] <= 600, rule["name"]
        # Healthy traffic: at most pending (each `for:` is longer than this test), nothing for the 4xx we sent.
        assert rule["state"] != "firing", f"{rule['name']}: {rule['alerts']}"
        assert rule["name"] != "ModelyardHighErrorRate" or rule["state"] == "inactive"


def test_engine_down_alert_ignores_a_retired_version(
    canary_gateway: GatewayProcess, prometheus: PrometheusProcess, traffic: Traffic
) -> None:
    """Deleting the canary alias drains and stops the :2 engine; the gateway keeps its ``engine_up`` at 0. The
    alert (and the dashboard's engine-up panel) must not call that an outage. Runs last: it changes what serves."""
    modelyard(canary_gateway.log_path.parent, "models", "alias", MODEL, "canary", "--delete")  # its data dir
    retired = f'modelyard_engine_requests_in_flight{{engine="{V2_ENGINE}"}}'
    prometheus.wait_for(lambda: not prometheus.query(retired), f"{V2_ENGINE} to be retired", timeout=90)
    assert prometheus.scalar(f'modelyard_engine_up{{engine="{V2_ENGINE}"}}') in (0.0, None)
    rule = next(
        rule for group in prometheus.rule_groups() for rule in group["rules"] if rule["name"] == "ModelyardEngineDown"
    )
    assert prometheus.query(rule["query"]) == []
    engine_up = next(q for q in panel_queries(dashboard()) if q.panel == "Engine up")
    shown = prometheus.query(substitute(engine_up.expr, dict.fromkeys(VARIABLES, ALL)))
    assert {s["metric"]["engine"] for s in shown} == {V1_ENGINE}
    assert all(float(s["value"][1]) == 1 for s in shown)


def _timestamp(rfc3339: str) -> float:
    """Prometheus's lastEvaluation (RFC 3339 with nanoseconds, which ``fromisoformat`` refuses) as a Unix time."""
    match = re.fullmatch(r"(.+T\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)", rfc3339)
    assert match, rfc3339
    seconds, fraction, zone = match.groups()
    return datetime.fromisoformat(seconds + ("+00:00" if zone == "Z" else zone)).timestamp() + float(fraction or 0)
