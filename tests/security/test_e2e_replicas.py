"""Two real gateway replicas sharing PostgreSQL and Redis: key propagation, the authorization matrix over every
endpoint of the OpenAPI document, limits exact under concurrent load, budgets, and the audit chain."""

from __future__ import annotations

import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from conftest import MODEL
from security.conftest import Replicas

pytestmark = [pytest.mark.engine, pytest.mark.postgres]

COMPLETION = {"model": MODEL, "prompt": "Hi", "max_tokens": 1, "temperature": 0}


def _wait_for(check, timeout: float = 5.0, every: float = 0.01) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if check():
            return time.monotonic() - started
        time.sleep(every)
    raise AssertionError(f"not true within {timeout} s")


def test_revoking_a_key_on_one_replica_is_refused_by_the_other_within_a_second(replicas: Replicas) -> None:
    key_id, key = replicas.create_key(scopes=["inference"])
    with replicas.client(replicas.b, key) as b:
        _wait_for(lambda: b.get("/v1/models").status_code == 200)  # created on A, known on B
        with replicas.admin(replicas.a) as admin:
            started = time.monotonic()
            assert admin.post(f"/admin/keys/{key_id}/revoke").status_code == 200
            revoked_after = time.monotonic() - started
        elapsed = _wait_for(lambda: b.get("/v1/models").status_code == 401, timeout=2.0, every=0.005)
        total = revoked_after + elapsed
        print(f"\nrevocation: admin call {revoked_after * 1000:.0f} ms, refused on replica B {total * 1000:.0f} ms "
              "after the revoke call started")  # fmt: skip
        assert total < 1.0
        error = b.get("/v1/models").json()["error"]
        assert error["code"] == "invalid_api_key"


def _fill(path: str) -> str:
    values = {
        "name": "no-such-model", "version": "999", "alias": "staging", "id": "key_nope", "model": "nope",
        "rollout": "999", "action": "abort", "experiment": "no-such-experiment",
    }  # fmt: skip
    return re.sub(r"\{(\w+)\}", lambda m: values[m.group(1)], path)


def test_authorization_matrix_over_every_endpoint_and_key_kind(replicas: Replicas) -> None:
    """Every (method, path) of /openapi.json x {no key, unknown, revoked, expired, inference, read, admin}."""
    document = httpx.get(replicas.a.url + "/openapi.json", timeout=10).json()
    keys = {scope: replicas.create_key(scopes=[scope])[1] for scope in ("inference", "read", "admin")}
    revoked_id, revoked = replicas.create_key(scopes=["inference", "read", "admin"])
    expired_id, expired = replicas.create_key(scopes=["inference", "read", "admin"])
    with replicas.admin() as admin:
        assert admin.post(f"/admin/keys/{revoked_id}/revoke").status_code == 200
        assert admin.post(f"/admin/keys/{expired_id}/expire").status_code == 200
    time.sleep(0.6)  # let both replicas load the snapshot
    callers: dict[str, str | None] = {
        "none": None,
        "unknown": "my-" + "x" * 43,
        "revoked": revoked,
        "expired": expired,
        **keys,
    }
    public = {"/health", "/ready", "/openapi.json", "/metrics"}
    checked = 0
    failures = []
    for path, operations in document["paths"].items():
        for method in operations:
            url = _fill(path)
            needed = None if path in public else "inference" if path.startswith("/v1/") else (
                "read" if method == "get" else "admin"
            )  # fmt: skip
            security = operations[method].get("security") or []
            if any("consoleSession" in s for s in security):
                needed = "console session"  # a page of the web console: a bearer key alone never opens it
            elif not security and path.startswith("/console"):
                needed = None  # the console's public pages: login, logout, its assets
            for who, key in callers.items():
                gateway = replicas.a if checked % 2 else replicas.b
                headers = {"authorization": f"Bearer {key}"} if key else {}
                body = b"not json" if method in ("post", "put", "patch") else None
                answer = httpx.request(method.upper(), gateway.url + url, headers=headers, content=body, timeout=60)
                checked += 1
                status = answer.status_code
                if path == "/console/login" and method == "post":
                    ok = status == 401  # the key comes in the form (none here), never from the Authorization header
                elif needed is None:
                    ok = status not in (401, 403)
                elif needed == "console session":
                    ok = status in (303, 401, 403) or (status == 302 and "/console/login" in answer.headers["location"])
                elif who in ("none", "unknown", "revoked", "expired"):
                    ok = status == 401 and answer.json()["error"]["code"] == "invalid_api_key"
                elif who == needed or (who == "admin" and needed == "read"):
                    ok = status not in (401, 403) and status < 500
                else:
                    ok = status == 403 and answer.json()["error"]["code"] == "insufficient_scope"
                if not ok:
                    failures.append(f"{method.upper()} {url} as {who}: {status} {answer.text[:200]}")
    print(f"\nauthorization matrix: {checked} requests, {len(document['paths'])} paths, {len(callers)} callers")
    assert not failures, "\n".join(failures)


def _burst(replicas: Replicas, key: str, n: int, body: dict, stream: bool = False) -> list[httpx.Response]:
    """n requests at once, alternating replicas. Every client connects and warms up first (GET /v1/models is not
    rate limited), then all fire together from a barrier: on a loaded machine, thread start-up and connection set-up
    would otherwise spread the "burst" over seconds and let the rpm bucket refill (1 request per 6 s at rpm=10)."""
    barrier = threading.Barrier(n)

    def one(i: int) -> httpx.Response:
        gateway = replicas.a if i % 2 else replicas.b
        with httpx.Client(base_url=gateway.url, timeout=300, headers={"authorization": f"Bearer {key}"}) as client:
            assert client.get("/v1/models").status_code == 200
            barrier.wait(timeout=60)
            answer = client.post("/v1/completions", json={**body, "stream": stream})
            answer.read()
            return answer

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(one, range(n)))


def test_requests_per_minute_hold_exactly_across_two_replicas_under_concurrent_load(replicas: Replicas) -> None:
    _, key = replicas.create_key(scopes=["inference"], limits={"rpm": 10})
    time.sleep(0.6)
    answers = _burst(replicas, key, 30, COMPLETION)
    statuses = sorted(a.status_code for a in answers)
    print(f"\nrpm=10, 30 concurrent over 2 replicas: {statuses.count(200)} x 200, {statuses.count(429)} x 429")
    assert statuses.count(200) == 10 and statuses.count(429) == 20, statuses
    refused = next(a for a in answers if a.status_code == 429)
    assert refused.json()["error"]["code"] == "rate_limit_exceeded"
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.headers["x-ratelimit-limit-requests"] == "10"
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"
    assert refused.headers["x-ratelimit-reset-requests"].endswith("s")
    served = next(a for a in answers if a.status_code == 200)
    assert served.headers["x-ratelimit-limit-requests"] == "10"


def test_tokens_per_minute_hold_exactly_with_the_estimate(replicas: Replicas) -> None:
    # Each request is estimated at ceil(2 chars / 4) + max_tokens 50 = 51 tokens: 3 fit in 200, a 4th does not.
    _, key = replicas.create_key(scopes=["inference"], limits={"tpm": 200})
    time.sleep(0.6)
    answers = _burst(replicas, key, 12, {**COMPLETION, "max_tokens": 50})
    statuses = sorted(a.status_code for a in answers)
    print(f"\ntpm=200, 12 concurrent x 51 estimated tokens: {statuses.count(200)} x 200, {statuses.count(429)} x 429")
    assert statuses.count(200) == 3 and statuses.count(429) == 9, statuses
    refused = next(a for a in answers if a.status_code == 429)
    assert refused.json()["error"]["type"] == "tokens"
    assert refused.headers["x-ratelimit-limit-tokens"] == "200"


def test_concurrent_requests_hold_exactly_across_replicas(replicas: Replicas) -> None:
    _, key = replicas.create_key(scopes=["inference"], limits={"concurrency": 2})
    time.sleep(0.6)
    body = {**COMPLETION, "max_tokens": 64, "ignore_eos": True}
    answers = _burst(replicas, key, 8, body, stream=True)
    statuses = sorted(a.status_code for a in answers)
    print(f"\nconcurrency=2, 8 concurrent streams: {statuses.count(200)} x 200, {statuses.count(429)} x 429")
    assert statuses.count(200) == 2 and statuses.count(429) == 6, statuses
    # slots are released: the next request is served
    with replicas.client(replicas.a, key) as client:
        assert client.post("/v1/completions", json=COMPLETION).status_code == 200


def test_token_budget_is_refused_by_name_and_spend_is_visible(replicas: Replicas) -> None:
    key_id, key = replicas.create_key(scopes=["inference"], limits={"token_budget": 40, "budget_period": "day"})
    time.sleep(0.6)
    used = 0
    answers = []
    for i in range(4):
        gateway = replicas.a if i % 2 else replicas.b
        with replicas.client(gateway, key) as client:
            answer = client.post("/v1/completions", json={**COMPLETION, "max_tokens": 20})
        answers.append(answer)
        if answer.status_code == 200:
            used += answer.json()["usage"]["total_tokens"]
        else:
            break
    assert [a.status_code for a in answers[:-1]] == [200] * (len(answers) - 1)
    refused = answers[-1]
    assert refused.status_code == 429, refused.text
    error = refused.json()["error"]
    assert error["code"] == "budget_exceeded" and error["type"] == "insufficient_quota"
    assert "daily token budget (40 tokens)" in error["message"]
    assert used >= 40
    with replicas.admin(replicas.b) as admin:
        _wait_for(lambda: sum(r["tokens"] for r in admin.get(f"/admin/keys/{key_id}/spend").json()["data"]
                              if r["period"].startswith("d")) == used, timeout=5)  # fmt: skip
    shown = replicas.cli("keys", "spend", key_id, "--json")
    assert shown.returncode == 0, shown.stderr
    assert f'"tokens": {used}' in shown.stdout


def test_audit_log_records_admin_actions_and_a_hand_edit_is_detected(replicas: Replicas) -> None:
    key_id, _ = replicas.create_key(scopes=["read"])
    with replicas.admin() as admin:
        admin.post(f"/admin/keys/{key_id}/revoke")
        records = admin.get("/admin/audit", params={"limit": 1000}).json()["data"]
    actions = {r["action"] for r in records}
    assert {"key.create", "key.revoke", "registry.model_created", "registry.alias_moved"} <= actions
    revoke = next(r for r in records if r["action"] == "key.revoke" and r["target"] == key_id)
    assert revoke["actor"].startswith("key:bootstrap-admin(")
    assert revoke["before"]["revoked_at"] is None and revoke["after"]["revoked_at"]
    verified = replicas.cli("audit", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    print("\n" + verified.stdout.strip())
    target = revoke["id"]
    replicas.sql(f"UPDATE audit_log SET actor = 'mallory' WHERE id = {target}")
    broken = replicas.cli("audit", "verify")
    print(broken.stdout.strip())
    assert broken.returncode == 1
    assert f"record {target} was edited" in broken.stdout
    with replicas.admin(replicas.b) as admin:
        assert admin.get("/admin/audit/verify").json()["record_id"] == target
    replicas.sql(f"UPDATE audit_log SET actor = '{revoke['actor']}' WHERE id = {target}")  # put it back
    assert replicas.cli("audit", "verify").returncode == 0
    replicas.sql(f"DELETE FROM audit_log WHERE id = {target - 1}")
    deleted = replicas.cli("audit", "verify")
    print(deleted.stdout.strip())
    assert deleted.returncode == 1 and f"record {target - 1} is missing" in deleted.stdout
