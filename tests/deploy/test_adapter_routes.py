"""Routes to ``base+adapter``: the deployments keys, their resolution against the registry (an adapter only on its
parent), the catalog each engine kind gets (llama.cpp: per-request ``lora`` scales on one shared engine; vLLM: the
adapter's served name), which adapters each base engine must hold and how it gets there. Pure: no engine."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from modelyard.deploy.adapter_sets import after_unload, plan_adapters
from modelyard.deploy.engine_config import llama_server_config, vllm_server_config
from modelyard.deploy.plan import ServingPlan
from modelyard.deploy.routes import CatalogInputs, adapters_wanted, build_catalog, resolve_deployments
from modelyard.engines.settings import EngineSettings
from modelyard.engines.vllm_settings import VllmSettings
from modelyard.registry.records import ModelRecord, RegistrySnapshot, VersionRecord
from modelyard.routing.config import DeploymentsError, parse_deployments
from modelyard.routing.model import Replica
from routing.test_catalog import StaticUpstream

NOW = datetime(2026, 12, 2, tzinfo=UTC)


def _version(model: str, number: int, fmt: str, parent: str | None = None, rank: int | None = None) -> VersionRecord:
    return VersionRecord(
        model=model,
        number=number,
        artifact_uri=f"/m/{model}-{number}",
        sha256=f"{number:064d}",
        size_bytes=1,
        format=fmt,
        quantization="",
        architecture="gemma3",
        parameter_count=None,
        context_length=None,
        license="",
        base_model="",
        parent=parent,
        training_data=(),
        fine_tuning_data=(),
        lineage_notes="",
        header={"lora": {"rank": rank}} if rank else {},
        created_by="t",
        created_at=NOW,
    )


GGUF = _version("gemma", 1, "gguf")
HF = _version("gemma", 2, "hf", parent="gemma:1")
QA_PEFT = _version("qa", 1, "lora-peft", parent="gemma:2", rank=8)
QA_GGUF = _version("qa", 2, "lora-gguf", parent="gemma:1")
POEM_GGUF = _version("poem", 1, "lora-gguf", parent="gemma:1")


def _snapshot() -> RegistrySnapshot:
    def model(name: str, *versions: VersionRecord) -> ModelRecord:
        return ModelRecord(
            name=name, description="", owner="", tags={}, created_by="t", created_at=NOW, versions=versions
        )

    return RegistrySnapshot(
        1, {"gemma": model("gemma", GGUF, HF), "qa": model("qa", QA_PEFT, QA_GGUF), "poem": model("poem", POEM_GGUF)}
    )


SHARED = """
routes:
  gemma-lora:
    targets:
      base: {model: "gemma:1", weight: 0}
      qa: {model: "gemma:1", adapter: "qa:2", adapter_scale: 0.8}
      poem: {model: "gemma:1", adapter: "poem:1", weight: 0}
  gemma-vllm-qa:
    targets:
      qa: {model: "gemma:2", adapter: "qa:1"}
"""


def _catalog(adapters: dict[str, tuple[str, ...]]):  # type: ignore[no-untyped-def]
    spec = parse_deployments(SHARED)
    resolved = resolve_deployments(_snapshot(), spec, "d.yaml", strict=True)
    replicas = {key: (Replica(key, StaticUpstream(key)),) for key in ("gemma:1", "gemma:2")}
    inputs = CatalogInputs(
        plan=ServingPlan(),
        registry_routes={"gemma:1": "gemma:1"},
        versions={"gemma:1": GGUF, "gemma:2": HF},
        replicas_of=lambda key: replicas.get(key, ()),
        remote_replica=lambda url, target: Replica(url, StaticUpstream(url)),
        prices={},
        embeddings=False,
        spec=spec,
        resolved=resolved,
        adapters_of=lambda key: adapters.get(key, ()),
    )
    return resolved, build_catalog(inputs)


def _route(catalog, name: str):  # type: ignore[no-untyped-def]
    route = catalog.resolve(name)
    assert route is not None
    return route


def test_adapters_of_one_base_share_its_engine_with_per_request_scales() -> None:
    resolved, catalog = _catalog({"gemma:1": ("poem:1", "qa:2"), "gemma:2": ("qa:1",)})
    assert {k: [a.key for a in v] for k, v in adapters_wanted(resolved).items()} == {
        "gemma:1": ["poem:1", "qa:2"],  # sorted: llama.cpp numbers --lora adapters in this order
        "gemma:2": ["qa:1"],
    }
    base, qa, poem = _route(catalog, "gemma-lora").targets
    assert base.replicas == qa.replicas == poem.replicas  # one engine
    assert (base.served.lora, qa.served.lora, poem.served.lora) == (
        ((0, 0.0), (1, 0.0)),
        ((0, 0.0), (1, 0.8)),
        ((0, 1.0), (1, 0.0)),
    )
    assert qa.served.key == "qa:2" and qa.headers[1] == (b"x-modelyard-model-version", b"qa:2")
    assert qa.served.upstream_fields({"model": "gemma-lora", "prompt": "x"}) == {
        "model": "gemma-lora",
        "prompt": "x",
        "lora": [{"id": 0, "scale": 0.0}, {"id": 1, "scale": 0.8}],
    }
    assert _route(catalog, "gemma:1").primary.served.lora == ((0, 0.0), (1, 0.0))  # the registry id: the base alone
    (vllm_qa,) = _route(catalog, "gemma-vllm-qa").targets
    assert vllm_qa.served.upstream_model == "qa:1" and vllm_qa.served.lora == ()
    assert vllm_qa.served.upstream_fields({"model": "gemma-vllm-qa"}) == {"model": "qa:1"}


def test_an_adapter_not_loaded_yet_has_no_replicas_and_says_why() -> None:
    _, catalog = _catalog({"gemma:1": ("qa:2",)})
    base, qa, poem = _route(catalog, "gemma-lora").targets
    assert base.replicas and qa.replicas and qa.served.lora == ((0, 0.8),)
    assert poem.replicas == () and poem.missing == "adapter poem:1 is not loaded on the engines of gemma:1 yet"


@pytest.mark.parametrize(
    ("target", "where", "problem"),
    [
        ('{model: "qa:2"}', "model", "qa:2 is a LoRA adapter of gemma:1; it cannot be served on its own"),
        ('{model: "gemma:2", adapter: "qa:2"}', "adapter", "qa:2 is a LoRA adapter of gemma:1, not of gemma:2"),
        ('{model: "gemma:1", adapter: "qa:1"}', "adapter", "qa:1 is a LoRA adapter of gemma:2, not of gemma:1"),
        ('{model: "gemma:1", adapter: "gemma:2"}', "adapter", "gemma:2 is not a LoRA adapter (format hf)"),
        ('{model: "gemma:2", adapter: "qa:1", adapter_scale: 0.5}', "adapter", "adapter_scale must be 1.0 on a vLLM"),
        ('{model: "gemma:1", adapter: "qa:9"}', "adapter", "model 'qa' has no version 9"),
    ],
)
def test_wrong_adapter_targets_are_refused_naming_the_key(target: str, where: str, problem: str) -> None:
    spec = parse_deployments(f"routes:\n  r:\n    targets:\n      t: {target}\n")
    with pytest.raises(DeploymentsError) as refused:
        resolve_deployments(_snapshot(), spec, "d.yaml", strict=True)
    assert refused.value.path == f"routes.r.targets.t.{where}" and problem in refused.value.problem
    (lenient,) = resolve_deployments(_snapshot(), spec, "d.yaml", strict=False)["r"]
    assert lenient.version is None and problem in str(lenient.missing)


@pytest.mark.parametrize(
    ("target", "problem"),
    [
        ('{url: "http://x:1/v1", adapter: "qa:2"}', "served on a registry 'model' (its base), not on a remote"),
        ('{model: "gemma:1", adapter: "qa:2", adapter_scale: 0}', "must be above 0 and at most 4"),
        ('{model: "gemma:1", adapter: "qa@@"}', "adapter"),
    ],
)
def test_adapter_keys_are_checked_when_the_file_is_read(target: str, problem: str) -> None:
    with pytest.raises(DeploymentsError, match=re.escape(problem)):
        parse_deployments(f"routes:\n  r:\n    targets:\n      t: {target}\n")


def test_llama_cpp_is_relaunched_for_a_new_adapter_vllm_loads_it_at_run_time() -> None:
    running = {"gemma:1": "llama.cpp", "gemma:2": "vllm", "gemma:3": "vllm"}
    current = {"gemma:1": ("a:1",), "gemma:2": ("b:1",)}
    wanted = {"gemma:1": ("a:1", "c:1"), "gemma:2": ("d:1",), "gemma:3": ("e:1",), "gemma:4": ("f:1",)}
    plan = plan_adapters(running, current, wanted, lora_enabled={"gemma:2"})
    assert plan.relaunch == {"gemma:1", "gemma:3"}  # llama.cpp cannot load more; vLLM gemma:3 has no LoRA on
    assert plan.load == {"gemma:2": ("d:1",)} and plan.unload == {"gemma:2": ("b:1",)}
    assert plan.sets == {"gemma:1": ("a:1", "c:1"), "gemma:2": ("b:1", "d:1"), "gemma:3": ("e:1",), "gemma:4": ("f:1",)}
    assert after_unload(plan.sets, plan.unload)["gemma:2"] == ("d:1",)
    # an adapter no longer wanted stays loaded (at scale 0) on llama.cpp: no relaunch just to drop it
    calm = plan_adapters({"gemma:1": "llama.cpp"}, {"gemma:1": ("a:1", "c:1")}, {"gemma:1": ("c:1",)}, set())
    assert calm.relaunch == frozenset() and calm.sets == {"gemma:1": ("a:1", "c:1")}
    assert plan_adapters({"gemma:1": "llama.cpp"}, {}, {}, set()).sets == {"gemma:1": ()}


def test_engine_command_lines_load_the_adapters() -> None:
    llama = llama_server_config(GGUF, EngineSettings(), (POEM_GGUF, QA_GGUF)).argv(Path("llama-server"), 1)
    assert "--lora-init-without-apply" in llama
    assert [llama[i + 1] for i, a in enumerate(llama) if a == "--lora-scaled"] == ["/m/poem-1:0", "/m/qa-2:0"]
    assert "--lora-scaled" not in llama_server_config(GGUF, EngineSettings()).argv(Path("llama-server"), 1)
    vllm = vllm_server_config(HF, VllmSettings(), (QA_PEFT,)).argv(Path("vllm"), 1)
    assert "VLLM_ALLOW_RUNTIME_LORA_UPDATING=True" in vllm and "--enable-lora" in vllm
    assert vllm[vllm.index("--max-lora-rank") + 1] == "16" and vllm[vllm.index("--max-loras") + 1] == "4"
    assert vllm[vllm.index("--lora-modules") + 1] == "qa:1=/m/qa-1"
    big = vllm_server_config(HF, VllmSettings(), (replace(QA_PEFT, header={"lora": {"rank": 40}}),)).argv(Path("v"), 1)
    assert big[big.index("--max-lora-rank") + 1] == "64"
    empty = vllm_server_config(HF, VllmSettings(), (), lora=True).argv(Path("vllm"), 1)
    assert "--enable-lora" in empty and "--lora-modules" not in empty
    assert "--enable-lora" not in vllm_server_config(HF, VllmSettings()).argv(Path("vllm"), 1)
