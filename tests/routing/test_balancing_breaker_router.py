from __future__ import annotations

from modelyard.routing.balancing import ReplicaView, pick_replica, updated_ewma
from modelyard.routing.breaker import CLOSED, BreakerPolicy, after_failure, after_probe, after_success, probe_due
from modelyard.routing.compare import Answer, answer_text, compare
from modelyard.routing.complexity import ComplexityScorer


def _r(name: str, outstanding: int = 0, usable: bool = True, ewma: float | None = None) -> ReplicaView:
    return ReplicaView(name, usable, outstanding, ewma)


def test_least_outstanding_prefers_the_idle_replica_and_rotates_ties() -> None:
    assert pick_replica("least_outstanding", [_r("a", 3), _r("b", 1), _r("c", 2)], 0) == 1
    ties = {pick_replica("least_outstanding", [_r("a"), _r("b")], turn) for turn in range(4)}
    assert ties == {0, 1}
    assert pick_replica("least_outstanding", [_r("a", usable=False), _r("b", 9)], 0) == 1
    assert pick_replica("least_outstanding", [_r("a", usable=False)], 0) is None


def test_round_robin_latency_and_affinity() -> None:
    replicas = [_r("a"), _r("b"), _r("c")]
    assert [pick_replica("round_robin", replicas, t) for t in range(6)] == [0, 1, 2, 0, 1, 2]
    slow_fast = [_r("a", 0, ewma=0.5), _r("b", 2, ewma=0.05)]
    assert pick_replica("latency_ewma", slow_fast, 0) == 1  # 0.05 * 3 < 0.5 * 1
    assert pick_replica("latency_ewma", [_r("a", 0, ewma=0.5), _r("new")], 0) == 1  # unmeasured gets a sample
    chosen = {pick_replica("session_affinity", replicas, t, "conversation-42") for t in range(10)}
    assert len(chosen) == 1
    assert updated_ewma(None, 1.0) == 1.0 and abs(updated_ewma(1.0, 0.0) - 0.7) < 1e-9


def test_breaker_ejects_after_consecutive_failures_and_needs_a_probe() -> None:
    policy = BreakerPolicy(failures=3, cooldown_s=5, max_cooldown_s=20)
    state = after_failure(after_failure(CLOSED, 0, policy), 0, policy)
    assert not state.ejected
    assert after_success(state) == CLOSED  # a success resets the count
    state = after_failure(state, 10, policy)
    assert state.ejected and state.probe_due == 15
    assert after_success(state).ejected  # a stray late answer does not re-admit
    assert not probe_due(state, 14) and probe_due(state, 15)
    failed = after_probe(state, False, 15, policy)
    assert failed.ejected and failed.probe_due == 25  # cooldown doubled
    assert after_probe(after_probe(failed, False, 25, policy), False, 45, policy).cooldown_s == 20  # capped
    assert after_probe(failed, True, 25, policy) == CLOSED


def test_router_sends_hard_prompts_to_the_large_target() -> None:
    scorer = ComplexityScorer()
    easy = {"messages": [{"role": "user", "content": "Hi! What's the capital of France?"}]}
    hard = {
        "messages": [
            {
                "role": "user",
                "content": "Explain why this Python function is slow and derive its complexity step by step, "
                "then prove the bound:\n```python\ndef f(n):\n"
                "    return sum(i * j for i in range(n) for j in range(n))\n```",
            }
        ]
    }
    assert not scorer.decide(easy).large
    decision = scorer.decide(hard)
    assert decision.large and decision.choice == "large" and 0.5 <= decision.score <= 1
    features = scorer.features(hard)
    assert features["code"] == 1.0 and features["reasoning"] > 0 and features["math"] > 0
    long_prompt = {"prompt": "word " * 4000}
    assert scorer.features(long_prompt)["length"] == 1.0
    strict = ComplexityScorer.configured(0.9, 1500, 12, {})
    assert not strict.decide(hard).large  # the threshold is the knob


def test_shadow_comparison_reads_json_and_streams() -> None:
    body = b'{"choices":[{"message":{"role":"assistant","content":"Paris."}}]}'
    stream = (
        b'data: {"choices":[{"delta":{"content":"Par"}}]}\n\n'
        b'data: {"choices":[{"delta":{"content":"is."}}]}\n\ndata: [DONE]\n\n'
    )
    assert answer_text(body, False) == "Paris."
    assert answer_text(stream, True) == "Paris."
    same = compare(Answer(200, "Paris.", 2, 0.1), Answer(200, "Paris.", 2, 0.3))
    assert same.exact_match and same.similarity == 1.0 and abs(same.latency_delta_s - 0.2) < 1e-9
    other = compare(Answer(200, "Paris.", 2, 0.1), Answer(200, "Lyon.", 3, 0.1))
    assert not other.exact_match and other.similarity < 1 and other.token_delta == 1
