from __future__ import annotations

from pathlib import Path

import pytest

from modelyard.routing.config import DeploymentsError, load_deployments, parse_deployments

GOOD = """
routes:
  chat:
    targets:
      stable: {model: gemma-3-270m@production, weight: 90, replicas: 2, region: eu}
      canary: {model: "gemma-3-270m:2", weight: 10}
      cloud: {url: ["http://10.0.0.1:8000/v1", "https://api.example.com/v1"], upstream_model: llama, weight: 0}
    sticky: {key: "header:x-user-id"}
    shadow: {target: cloud, sample: 0.5}
    fallbacks: [cloud]
    retry: {attempts: 4, deadline_s: 30, first_byte_timeout_s: 10}
    breaker: {failures: 2, cooldown_s: 1}
    balancing: latency_ewma
  tiered:
    targets:
      small: {model: gemma-3-270m}
      large: {model: "gemma-3-270m:2", weight: 0}
    router: {small: small, large: large, threshold: 0.4, weights: {code: 2}}
"""


def test_a_complete_file_is_accepted() -> None:
    spec = parse_deployments(GOOD, "deployments.yaml")
    chat = spec.routes["chat"]
    assert chat.targets["stable"].replicas == 2 and chat.targets["cloud"].urls()[1].startswith("https")
    assert chat.retry.attempts == 4 and chat.breaker.failures == 2 and chat.balancing == "latency_ewma"
    assert spec.routes["tiered"].router is not None


@pytest.mark.parametrize(
    ("text", "path", "problem"),
    [
        ("routes: {chat: {targets: {a: {model: m, wieght: 3}}}}", "routes.chat.targets.a", "unknown key `wieght`"),
        ("routes: {chat: {targets: {a: {model: m, weight: -1}}}}", "routes.chat.targets.a.weight", "must be 0 or more"),
        (
            "routes: {chat: {targets: {a: {model: m}}, fallbacks: [b]}}",
            "routes.chat.fallbacks[0]",
            "unknown target 'b'",
        ),
        ("routes: {chat: {targets: {a: {model: m, url: 'http://x'}}}}", "routes.chat.targets.a", "exactly one of"),
        ("routes: {chat: {targets: {a: {url: 'ftp://x'}}}}", "routes.chat.targets.a.url", "http(s)://"),
        ("routes: {chat: {targets: {a: {model: 'bad name!'}}}}", "routes.chat.targets.a.model", "Invalid model name"),
        ("routes: {chat: {targets: {a: {model: m, weight: 0}}}}", "routes.chat.targets", "weight above 0"),
        ("routes: {chat: {targets: {a: {model: m}}, sticky: {key: cookie}}}", "routes.chat.sticky.key", "header:NAME"),
        ("routes: {chat: {targets: {a: {model: m}}, shadow: {target: z}}}", "routes.chat.shadow.target", "unknown"),
        ("routes: {chat: {targets: {a: {model: m}}, retry: {attempts: 0}}}", "routes.chat.retry.attempts", "between"),
        ("routes: {chat: {targets: {a: {model: m}}, balancing: random}}", "routes.chat.balancing", "least_outstanding"),
        (
            "routes: {chat: {targets: {a: {model: m}, b: {model: n}}, router: {small: a, large: b, weights: {x: 1}}}}",
            "routes.chat.router.weights.x",
            "unknown feature",
        ),
        ("routes: [1, 2]", "routes", "Expected `object`"),
    ],
)
def test_errors_name_the_key_path_and_the_problem(text: str, path: str, problem: str) -> None:
    with pytest.raises(DeploymentsError) as caught:
        parse_deployments(text, "deploy.yaml")
    assert caught.value.source == "deploy.yaml"
    assert caught.value.path == path
    assert problem in caught.value.problem
    assert str(caught.value).startswith(f"deploy.yaml: {path}: ")


def test_broken_yaml_and_missing_files_are_clear(tmp_path: Path) -> None:
    with pytest.raises(DeploymentsError, match=r"x.yaml: line 3, column 1: not valid YAML"):
        parse_deployments("routes:\n  chat: [unclosed\n", "x.yaml")
    with pytest.raises(DeploymentsError, match="cannot read the file"):
        load_deployments(tmp_path / "missing.yaml")


def test_an_empty_file_declares_no_routes() -> None:
    assert parse_deployments("", "empty.yaml").routes == {}
