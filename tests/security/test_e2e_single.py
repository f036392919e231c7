"""One gateway at a time: auth switched off (and said so), Redis unreachable with fail-closed limits, and
schemathesis over the OpenAPI document with an admin key (zero server errors)."""

from __future__ import annotations

import re
import secrets
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from conftest import MODEL
from gateway_process import GatewayProcess
from otlp_receiver import OtlpReceiver

pytestmark = pytest.mark.engine


def test_auth_off_is_explicit_and_warned_about_at_start_and_in_ready(gateway: GatewayProcess) -> None:
    security = gateway.ready_info()["security"]
    assert security["auth"] == "off"
    assert "authentication is OFF" in security["warning"]
    assert "authentication is OFF" in gateway.log_path.read_text()


def test_keys_are_required_by_default_and_the_bootstrap_key_is_printed_once(
    start_gateway: Callable[..., GatewayProcess],
) -> None:
    process = start_gateway("--parallel", "2", "--ctx-size", "2048", env={"MODELYARD_AUTH": "on"})
    log = process.log_path.read_text()
    assert "Bootstrap admin API key" in log
    key = log.split("Bootstrap admin API key", 1)[1].split()[10]  # the line after the banner's sentence
    assert key.startswith("my-")
    assert httpx.get(process.url + "/v1/models", timeout=5).status_code == 401
    assert httpx.get(process.url + "/admin/keys", timeout=5).status_code == 401
    listed = httpx.get(process.url + "/admin/keys", headers={"authorization": f"Bearer {key}"}, timeout=5)
    assert listed.status_code == 200 and key not in listed.text  # never a secret in a listing
    assert httpx.get(process.url + "/health", timeout=5).status_code == 200


def test_unreachable_redis_with_fail_closed_refuses_fast_and_says_why(
    start_gateway: Callable[..., GatewayProcess],
) -> None:
    admin_key = "my-" + secrets.token_urlsafe(32)
    process = start_gateway(
        "--parallel", "2", "--ctx-size", "2048", "--redis-url", "redis://127.0.0.1:1/0",
        "--ratelimit-fail-mode", "closed",
        env={"MODELYARD_AUTH": "on", "MODELYARD_ADMIN_KEY": admin_key},
    )  # fmt: skip
    admin = httpx.Client(base_url=process.url, headers={"authorization": f"Bearer {admin_key}"}, timeout=60)
    created = admin.post("/admin/keys", json={"name": "limited", "limits": {"rpm": 100}}).json()
    limited = httpx.Client(base_url=process.url, headers={"authorization": f"Bearer {created['key']}"}, timeout=60)
    time.sleep(0.5)
    started = time.monotonic()
    answer = limited.post("/v1/completions", json={"model": MODEL, "prompt": "Hi", "max_tokens": 1})
    elapsed = time.monotonic() - started
    assert answer.status_code == 503 and answer.json()["error"]["code"] == "rate_limiter_unavailable"
    assert elapsed < 2.0
    assert "failing closed" in process.ready_info()["security"]["rate_limiter_error"]
    metrics = admin.get("/metrics").text
    assert 'modelyard_ratelimit_backend_errors_total{outcome="fail_closed"}' in metrics
    # a key without limits does not need the limiter at all
    assert admin.post("/v1/completions", json={"model": MODEL, "prompt": "Hi", "max_tokens": 1}).status_code == 200


def test_schemathesis_finds_no_server_error_in_the_openapi_document(
    start_gateway: Callable[..., GatewayProcess], tmp_path: Path
) -> None:
    admin_key = "my-" + secrets.token_urlsafe(32)
    guardrails = tmp_path / "guardrails.yaml"
    guardrails.write_text('routes:\n  "*":\n    limits: {max_tokens: 8}\n')
    process = start_gateway(
        "--parallel", "2", "--ctx-size", "2048", "--guardrails", str(guardrails),
        env={"MODELYARD_AUTH": "on", "MODELYARD_ADMIN_KEY": admin_key},
    )  # fmt: skip
    report = tmp_path / "schemathesis.json"
    run = subprocess.run(
        [
            str(Path(sys.executable).parent / "schemathesis"), "run", process.url + "/openapi.json",
            "--header", f"Authorization: Bearer {admin_key}",
            "--checks", "not_a_server_error",
            "--phases", "examples,coverage,fuzzing",
            "--max-examples", "15",
            "--seed", "1",
            "--request-timeout", "60",
            "--workers", "2",
            "--report", "ndjson", "--report-ndjson-path", str(report),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,  # its .schemathesis/ cache stays out of the checkout
    )  # fmt: skip
    summary = run.stdout[-3000:]
    print("\n" + summary)
    # the ERRORS section names the operation, the exception and a curl line: the tail alone shows only a count
    errors = run.stdout.find(" ERRORS ")
    details = run.stdout[errors : errors + 6000] + "\n[...]\n" if errors >= 0 else ""
    assert run.returncode == 0, details + summary + run.stderr[-2000:]
    counts = re.search(r"(\d+) generated, (\d+) passed", summary)
    assert counts and counts.group(1) == counts.group(2) and int(counts.group(1)) > 200, summary


def test_no_key_material_in_logs_traces_the_request_log_or_errors(
    start_gateway: Callable[..., GatewayProcess], tmp_path: Path
) -> None:
    """A run with known secrets — the admin key, a created key, a wrong key, keys sent in every way the door reads
    (and refuses) them — then every output is searched for them: the gateway's log and every file it wrote (the
    request log and registry database, engine logs), the spans it exported, and every answer it gave."""
    receiver = OtlpReceiver()
    admin_key = "my-" + secrets.token_urlsafe(32)
    wrong_key = "my-" + secrets.token_urlsafe(32)
    try:
        process = start_gateway(
            "--parallel", "2", "--ctx-size", "2048", "--otlp-endpoint", receiver.url, "--log-format", "json",
            "--request-log-bodies", "*=1",
            env={"MODELYARD_AUTH": "on", "MODELYARD_ADMIN_KEY": admin_key, "OTEL_BSP_SCHEDULE_DELAY": "100"},
        )  # fmt: skip
        admin = httpx.Client(base_url=process.url, headers={"authorization": f"Bearer {admin_key}"}, timeout=60)
        created = admin.post("/admin/keys", json={"name": "app"})
        user_key = created.json()["key"]
        time.sleep(0.5)  # the key snapshot poller picks the new key up
        chat = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}
        answers: list[httpx.Response] = []
        for headers in (
            {"authorization": f"Bearer {user_key}"},
            {"x-api-key": user_key},
            {"authorization": "", "x-api-key": user_key},
            {"authorization": f"Bearer {wrong_key}"},
            {"x-api-key": wrong_key},
            {"authorization": user_key},  # no scheme: refused, and not echoed
            {"authorization": f"Basic {user_key}"},
            {"authorization": f"Bearer {user_key} trailing"},
        ):
            answers.append(httpx.post(process.url + "/v1/chat/completions", json=chat, headers=headers, timeout=60))
            answers.append(httpx.post(process.url + "/v1/chat/completions", content=b"{", headers=headers, timeout=60))
        answers.append(admin.get("/admin/keys"))
        answers.append(admin.get("/admin/requests?limit=100"))
        assert [a.status_code for a in answers[:6:2]] == [200, 200, 200]
        assert [a.status_code for a in answers[6:14:2]] == [401, 401, 401, 401]
        deadline = time.monotonic() + 15
        while len(receiver.spans) < 6 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert receiver.spans
        process.stop()
        outputs: dict[str, bytes] = {f"span {i}": span.SerializeToString() for i, span in enumerate(receiver.spans)}
        for index, answer in enumerate(answers):
            headers = b"".join(k.encode() + b": " + v.encode() for k, v in answer.headers.items())
            outputs[f"answer {index}"] = headers + answer.content
        data_dir = process.log_path.parent
        for path in data_dir.rglob("*"):
            if path.is_file() and path.stat().st_size < 50_000_000:  # not the model files
                outputs[str(path.relative_to(data_dir))] = path.read_bytes()
        assert any(name.endswith(".log") for name in outputs) and any(".db" in name for name in outputs)
        for secret in (admin_key, user_key, wrong_key):
            body = secret.removeprefix("my-").encode()
            leaked = [name for name, data in outputs.items() if body in data or body[:16] in data]
            assert not leaked, f"key material found in {leaked}"
    finally:
        receiver.close()
