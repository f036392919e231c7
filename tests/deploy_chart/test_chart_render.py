"""The Helm chart ``deploy/helm/modelyard``, rendered by real Helm for every values example and validated offline.

Each built-in object is validated against the strict Kubernetes JSON schemas (unknown fields are errors) of the two
newest minor versions ``kubernetes-validate`` ships. The Prometheus Operator objects have no schema there: the
PrometheusRule's groups go through ``promtool check rules`` (Prometheus' own parser) and the ServiceMonitors through
the part of their CRD schema the chart uses. What the chart says about the binaries (probe paths, ports, metric
names) is held against the code in test_chart_contract.py.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import helm_python as helm
import jsonschema
import pytest
import yaml
from kubernetes_validate import utils as kubernetes

from .rendering import CHART, EXAMPLES, example_values, of_kind, render

CUSTOM_KINDS = {"ServiceMonitor", "PrometheusRule"}
# The fields of monitoring.coreos.com/v1 ServiceMonitor the chart sets, as the CRD declares them (prometheus-operator
# example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml); anything else is an error here.
SERVICE_MONITOR = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "ServiceMonitor"},
        "metadata": {"type": "object", "required": ["name"]},
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "required": ["selector", "endpoints"],
            "properties": {
                "selector": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {"matchLabels": {"type": "object", "additionalProperties": {"type": "string"}}},
                },
                "namespaceSelector": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {"matchNames": {"type": "array", "items": {"type": "string"}}},
                },
                "endpoints": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "port": {"type": "string"},
                            "path": {"type": "string", "pattern": "^/"},
                            "interval": {
                                "type": "string",
                                "pattern": "^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?"
                                "(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$",
                            },
                            "relabelings": {
                                "type": "array",
                                "items": {
                                    "type": "object",
                                    "additionalProperties": False,
                                    "properties": {
                                        "sourceLabels": {
                                            "type": "array",
                                            "items": {"type": "string", "pattern": "^[a-zA-Z_][a-zA-Z0-9_]*$"},
                                        },
                                        "targetLabel": {"type": "string"},
                                        "replacement": {"type": "string"},
                                    },
                                },
                            },
                        },
                    },
                },
            },
        },
    },
}


def newest_minor_versions(count: int = 2) -> list[str]:
    minors = {kubernetes.major_minor(version) for version in kubernetes.all_versions()}
    return sorted(minors, key=lambda v: tuple(int(part) for part in v.split(".")))[-count:]


KUBERNETES_VERSIONS = newest_minor_versions()


def test_there_are_the_examples_the_docs_name() -> None:
    assert {path.stem for path in EXAMPLES} >= {"minimal-cpu", "gpu-vllm", "existing-secrets", "autoscaling"}


def test_two_kubernetes_versions_are_validated_against() -> None:
    assert len(KUBERNETES_VERSIONS) == 2
    assert KUBERNETES_VERSIONS[0] != KUBERNETES_VERSIONS[1]


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("example", [path.stem for path in EXAMPLES])
def test_every_rendered_object_is_valid_kubernetes(
    rendered: dict[str, list[dict[str, Any]]], example: str, version: str
) -> None:
    objects = rendered[example]
    assert objects
    for obj in objects:
        if obj["kind"] in CUSTOM_KINDS:
            continue
        try:
            kubernetes.validate(obj, version, strict=True)
        except kubernetes.ValidationError as exc:
            pytest.fail(f"{example}: {obj['kind']}/{obj['metadata']['name']} at {list(exc.path)}: {exc.message}")
        except kubernetes.SchemaNotFoundError as exc:
            pytest.fail(f"{example}: {exc.message}")


def test_a_broken_object_is_caught_by_the_validation() -> None:
    """The validation can fail: a misspelt field of a Deployment is an error in the strict schemas."""
    deployment = next(
        o for o in render(example_values(CHART / "examples" / "minimal-cpu.yaml")) if o["kind"] == "Deployment"
    )
    deployment["spec"]["template"]["spec"]["containers"][0]["livenessprobe"] = {}
    with pytest.raises(kubernetes.ValidationError):
        kubernetes.validate(deployment, KUBERNETES_VERSIONS[-1], strict=True)


def test_service_monitors_match_their_crd() -> None:
    objects = render(example_values(CHART / "examples" / "autoscaling.yaml"))
    monitors = {m["metadata"]["name"]: m for m in of_kind(objects, "ServiceMonitor")}
    assert set(monitors) == {"modelyard-gateway", "modelyard-engines-llamacpp", "modelyard-engines-vllm"}
    for monitor in monitors.values():
        jsonschema.validate(monitor, SERVICE_MONITOR)
        assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    # Each monitor's port is a port of the Services it selects (llama.cpp: the ops port; vLLM: its API port).
    for name, monitor in monitors.items():
        selector = monitor["spec"]["selector"]["matchLabels"]
        services = [s for s in of_kind(objects, "Service") if selector.items() <= s["metadata"]["labels"].items()]
        assert services, name
        for service in services:
            assert monitor["spec"]["endpoints"][0]["port"] in {p["name"] for p in service["spec"]["ports"]}, name


def test_prometheus_rule_groups_pass_promtool(tmp_path: Path) -> None:
    objects = render(example_values(CHART / "examples" / "autoscaling.yaml"))
    (rule,) = of_kind(objects, "PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert set(rule["spec"]) == {"groups"}
    rules_file = tmp_path / "rules.yml"
    rules_file.write_text(yaml.safe_dump(rule["spec"]))
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: `make setup` installs Debian's prometheus package (scripts/system-deps.sh)"
    result = subprocess.run([promtool, "check", "rules", str(rules_file)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_helm_lint_finds_nothing() -> None:
    for path in EXAMPLES:
        report = helm.lint(CHART, example_values(path), strict=True)
        problems = [m for m in report["messages"] if m["severity"] >= 2]
        assert not problems and not report["errors"], (path.stem, problems, report["errors"])


@pytest.mark.parametrize(
    ("values", "complaint"),
    [
        ({"gateway": {"replicaz": 3}}, "replicaz"),
        ({"llamacpp": [{"name": "Bad_Name", "model": "m:1"}]}, "Bad_Name"),
        ({"llamacpp": [{"name": "ok", "model": "m:1", "autoscaling": {"metric": "cpu"}}]}, "autoscaling/metric"),
        ({"gateway": {"auth": "maybe"}}, "gateway/auth"),
    ],
)
def test_the_values_schema_rejects_mistakes(values: dict[str, Any], complaint: str) -> None:
    with helm.Chart.load(CHART) as chart, pytest.raises(helm.HelmError, match=complaint):
        chart.validate_schema(values)


def test_missing_credentials_fail_the_render_with_a_reason() -> None:
    with pytest.raises(helm.HelmError, match=r"secrets\.databaseUrl is required"):
        render({"llamacpp": [{"name": "gemma", "model": "gemma-3-270m:1"}]})
    with pytest.raises(helm.HelmError, match=r"secrets\.existingSecret is required"):
        render({"secrets": {"create": False}})


def described(schema: dict[str, Any], path: str = "") -> list[str]:
    """Schema properties without a description (every value must say what it does)."""
    missing = []
    for key, prop in schema.get("properties", {}).items():
        if not prop.get("description"):
            missing.append(path + key)
        missing += described(prop, f"{path}{key}.")
        if isinstance(prop.get("items"), dict):
            missing += described(prop["items"], f"{path}{key}[].")
    return missing


def test_every_value_is_described_and_the_readme_table_is_current() -> None:
    import json
    import runpy

    schema = json.loads((CHART / "values.schema.json").read_text())
    assert described(schema) == []
    assert schema["additionalProperties"] is False  # an undocumented key cannot be set
    with helm.Chart.load(CHART) as chart:
        chart.validate_schema(chart.values)  # values.yaml itself holds to the schema
    generator = runpy.run_path(str(CHART.parents[2] / "scripts" / "chart_values_table.py"))
    assert generator["main"](["--check"]) == 0, "run `python scripts/chart_values_table.py`"


def test_the_packaged_chart_renders_the_same(tmp_path: Path, rendered: dict[str, list[dict[str, Any]]]) -> None:
    """`helm package` carries files/ (the alert rules and dashboard) and nothing the templates need is left out."""
    archive = helm.package(CHART, destination=tmp_path)
    values = example_values(CHART / "examples" / "autoscaling.yaml")
    with helm.Chart.load(archive) as chart:
        manifests = chart.render(values, name="modelyard", namespace="llm", is_install=True)
    objects = [
        doc
        for path, text in sorted(manifests.items())
        if not path.endswith("NOTES.txt")
        for doc in yaml.safe_load_all(text)
        if doc
    ]
    assert objects == rendered["autoscaling"]


@pytest.mark.parametrize("release", ["prod", "modelyard-eu"])
def test_object_names_follow_the_release(release: str) -> None:
    objects = render(example_values(CHART / "examples" / "minimal-cpu.yaml"), release=release)
    prefix = release if "modelyard" in release else f"{release}-modelyard"
    names = {(o["kind"], o["metadata"]["name"]) for o in objects}
    assert ("Deployment", f"{prefix}-gateway") in names
    assert ("Service", f"{prefix}-llamacpp-gemma") in names
    document = next(o for o in objects if o["metadata"]["name"] == f"{prefix}-deployments")["data"]["deployments.yaml"]
    assert "model: gemma-3-270m:1" in document
    (gateway,) = [o for o in objects if o["metadata"]["name"] == f"{prefix}-gateway" and o["kind"] == "Deployment"]
    args = gateway["spec"]["template"]["spec"]["containers"][0]["args"]
    assert f"gemma-3-270m:1=dns+http://{prefix}-llamacpp-gemma.llm.svc:8081" in args
