"""``lm-eval``'s ``local-completions`` model against the real gateway: a small generate-until task on a local
dataset (the gateway answers as an OpenAI completions endpoint). Loglikelihood tasks need prompt logprobs
(``echo``), which llama.cpp cannot compute: the gateway refuses them with a 400 naming the limit (tested in
``test_openai_sdk.py``); they run on vLLM, whose echo carries the prompt's logprobs
(``tests/engines/test_vllm_gateway.py::test_lm_eval_loglikelihood_task_on_vllm``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import MODEL
from gateway_process import GatewayProcess

pytestmark = [pytest.mark.engine, pytest.mark.slow]

DATA = Path(__file__).parent / "data" / "capitals.jsonl"


def test_generate_until_task(gateway: GatewayProcess, tmp_path: Path) -> None:
    import lm_eval
    from lm_eval.tasks import TaskManager

    (tmp_path / "capitals.yaml").write_text(
        f"""task: modelyard_capitals
dataset_path: json
dataset_kwargs:
  data_files:
    test: {DATA}
test_split: test
output_type: generate_until
doc_to_text: "{{{{question}}}}"
doc_to_target: " {{{{answer}}}}"
generation_kwargs:
  until: ["\\n", "."]
  max_gen_toks: 6
  temperature: 0
metric_list:
  - metric: exact_match
    aggregation: mean
    higher_is_better: true
    ignore_case: true
    ignore_punctuation: true
"""
    )
    results = lm_eval.simple_evaluate(
        model="local-completions",
        model_args=(
            f"base_url={gateway.url}/v1/completions,model={MODEL},tokenizer_backend=None,"
            "tokenized_requests=False,num_concurrent=1,max_retries=1"
        ),
        tasks=["modelyard_capitals"],
        task_manager=TaskManager(include_path=str(tmp_path)),
        log_samples=True,
    )
    assert results is not None
    samples = results["samples"]["modelyard_capitals"]
    assert len(samples) == 4
    assert all(isinstance(s["resps"][0][0], str) for s in samples)
    score = results["results"]["modelyard_capitals"]["exact_match,none"]
    assert 0.0 <= score <= 1.0
