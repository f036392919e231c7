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
