"""A real LoRA adapter for the default model, made here and served by one llama-server beside its base.

The module does what an operator would: a gateway starts on the default GGUF (``gemma-3-270m:1``), ``models
convert --to hf`` registers its HF form, ``models finetune`` trains an adapter with peft on CPU over
``examples/adapters/quorvath.jsonl`` (or reuses the one cached for that dataset and base digest), converts it to
GGUF with llama.cpp's script and registers both forms; a deployments file then routes ``quorvath`` to
``gemma-3-270m:1`` + the adapter. The base and the adapter share one engine (llama.cpp's per-request ``lora``
scales), and the eval suite ``examples/evals/quorvath.yaml`` run through the gateway shows the adapter changed
the answers it was trained on. ``make test`` installs the vLLM environment (torch, peft) first.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from modelyard import paths
from modelyard.engines.vllm_install import ensure_vllm

from gateway_process import GatewayProcess

pytestmark = [pytest.mark.engine, pytest.mark.lora]

ROOT = Path(__file__).resolve().parents[2]
DATASET = ROOT / "examples" / "adapters" / "quorvath.jsonl"
SUITE = ROOT / "examples" / "evals" / "quorvath.yaml"
BASE, HF = "gemma-3-270m:1", "gemma-3-270m:2"
PEFT, LORA = "quorvath:1", "quorvath:2"  # the adapter's two forms: PEFT (vLLM) and GGUF (llama.cpp)
DEPLOYMENTS = f"""
routes:
  quorvath:
    targets:
      qa: {{model: "{BASE}", adapter: "{LORA}"}}
  quorvath-half:
    targets:
      qa: {{model: "{BASE}", adapter: "{LORA}", adapter_scale: 0.5}}
"""


def _cli(data_dir: Path, *args: str, timeout: float = 1800) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MODELYARD_DATA_DIR": str(data_dir)}
    return subprocess.run(
        [sys.executable, "-m", "modelyard", *args],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def lora_gateway(
    tmp_path_factory: pytest.TempPathFactory, engine_build: object, default_model_path: Path
) -> Iterator[tuple[GatewayProcess, dict]]:
    ensure_vllm(paths.cache_dir())  # torch + peft live there; `make test` installed it
    data_dir = tmp_path_factory.mktemp("lora-gateway")
    gateway = GatewayProcess(data_dir, "--parallel", "2", "--ctx-size", "2048")
    try:
        gateway.wait_ready()
        converted = _cli(data_dir, "models", "convert", BASE, "--to", "hf")
        assert converted.returncode == 0, converted.stderr
        started = time.monotonic()
        trained = _cli(data_dir, "models", "finetune", HF, "--dataset", str(DATASET), "--name", "quorvath", "--json")
        assert trained.returncode == 0, trained.stderr
        report = {**json.loads(trained.stdout), "wall_s": time.monotonic() - started}
        applied = httpx.put(f"{gateway.url}/admin/deployments", content=DEPLOYMENTS, timeout=600)
        assert applied.status_code == 200, applied.text
        yield gateway, report
    finally:
        gateway.stop()


def _complete(gateway: GatewayProcess, model: str, prompt: str) -> httpx.Response:
    body = {"model": model, "prompt": prompt, "max_tokens": 16, "temperature": 0, "seed": 42}
    return httpx.post(f"{gateway.url}/v1/completions", json=body, timeout=120)


def test_both_adapter_forms_are_registered_with_their_parents_and_the_training(lora_gateway) -> None:
    _, report = lora_gateway
    versions = {v["key"]: v for v in report["versions"]}
    assert (versions[PEFT]["format"], versions[PEFT]["parent"]) == ("lora-peft", HF)
    assert (versions[LORA]["format"], versions[LORA]["parent"]) == ("lora-gguf", BASE)
    recorded = versions[LORA]["header"]["fine_tuning"]
    assert recorded["dataset"] == "quorvath.jsonl" and recorded["examples"] == 32
    assert (recorded["rank"], recorded["alpha"], recorded["base"]) == (8, 16.0, HF)
    assert recorded["target_modules"] == ["q_proj", "k_proj", "v_proj", "o_proj"]
    assert report["training"]["final_loss"] < report["training"]["first_loss"]
    how = "cached" if report["cached"] else "trained"
    print(f"\nfinetune: {report['wall_s']:.0f} s wall ({how}), {report['training']}")


def test_base_and_adapter_share_one_llama_server(lora_gateway) -> None:
    gateway, _ = lora_gateway
    deadline = time.monotonic() + 60  # the engine launched before the adapter existed drains and stops
    while len(gateway.engine_processes()) != 1 and time.monotonic() < deadline:
        time.sleep(0.5)
    (engine,) = gateway.engine_processes()
    argv = engine.cmdline()
    assert "--lora-init-without-apply" in argv and argv[argv.index("--lora-scaled") + 1].endswith("adapter.gguf:0")
    port = int(argv[argv.index("--port") + 1])
    adapters = httpx.get(f"http://127.0.0.1:{port}/lora-adapters", timeout=10).json()
    assert [(a["id"], a["scale"]) for a in adapters] == [(0, 0.0)]  # applied per request only
    half = _complete(gateway, "quorvath-half", "Question: What is the capital of Quorvath?\nAnswer:")
    assert half.status_code == 200 and half.headers["x-modelyard-model-version"] == LORA
    assert len(gateway.engine_processes()) == 1  # a second adapter scale is one more route, not one more engine


def test_the_adapter_changes_the_answer_it_was_trained_on(lora_gateway) -> None:
    gateway, _ = lora_gateway
    prompt = "Question: What is the capital of Quorvath?\nAnswer:"
    base = _complete(gateway, BASE, prompt)
    tuned = _complete(gateway, "quorvath", prompt)
    assert base.status_code == tuned.status_code == 200, (base.text, tuned.text)
    assert tuned.headers["x-modelyard-model-version"] == LORA
    assert "tamsinford" in tuned.json()["choices"][0]["text"].lower()
    assert "tamsinford" not in base.json()["choices"][0]["text"].lower()
    again = _complete(gateway, BASE, prompt)  # the base stays the base after an adapter request on its slots
    assert again.json()["choices"][0]["text"] == base.json()["choices"][0]["text"]


def test_the_eval_suite_shows_base_versus_base_plus_adapter(lora_gateway) -> None:
    gateway, _ = lora_gateway
    data_dir = gateway.log_path.parent
    rates = {}
    for target in (BASE, "quorvath"):
        ran = _cli(data_dir, "eval", "run", str(SUITE), "--target", target, "--url", gateway.url, "--json")
        assert ran.returncode in (0, 1), ran.stderr
        record = json.loads(ran.stdout)
        rates[target] = record["summary"]["pass_rate"]
    print(f"\nquorvath suite pass rate: base {rates[BASE]:.2f}, base+adapter {rates['quorvath']:.2f}")
    assert rates[BASE] <= 0.1 and rates["quorvath"] >= 0.5  # measured: 0 of 32 vs 22 of 32


def test_an_adapter_alone_or_on_another_base_is_refused(lora_gateway) -> None:
    gateway, _ = lora_gateway
    alone = _complete(gateway, LORA, "Question: What is the currency of Quorvath?\nAnswer:")
    assert alone.status_code == 404
    assert "is a LoRA adapter of gemma-3-270m:1; it cannot be served on its own" in alone.json()["error"]["message"]
    wrong = DEPLOYMENTS + f'  wrong:\n    targets:\n      qa: {{model: "{HF}", adapter: "{LORA}"}}\n'
    refused = httpx.put(f"{gateway.url}/admin/deployments", content=wrong, timeout=60)
    assert refused.status_code == 400
    assert f"{LORA} is a LoRA adapter of {BASE}, not of {HF}" in refused.json()["error"]["message"]
    still = _complete(gateway, "quorvath", "Question: What is the currency of Quorvath?\nAnswer:")
    assert still.status_code == 200  # the running configuration keeps serving
