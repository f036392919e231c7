"""Schemathesis over the whole OpenAPI document (api/openapi.py), in-process: the product's runtime and ASGI app
over fake upstreams, keys required, and every generated request sent with a key of each scope (inference, read,
admin) and with none. No answer may be a server error or disagree with the document (status declared, body
matching its schema, content type). Then statefully: sequences that follow the document's links (api/links.py:
create a key, then read, expire and revoke it; upload a file, make a batch of it, cancel it; store a response,
continue it, delete it), once with a key of each scope, under the same checks."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from mock_upstreams import MockUpstream
from modelyard.deploy.static import StaticUpstreams
from modelyard.gateway.settings import GatewaySettings
from modelyard.observability.metrics import GatewayMetrics
from modelyard.observability.routing_metrics import RoutingMetrics
from modelyard.observability.settings import ObservabilitySettings
from modelyard.roles.runtime import Runtime, StoredState
from modelyard.roles.stores import open_database
from modelyard.security.key_store import NewKey
from modelyard.security.keys import PEPPER_ENV
from modelyard.security.layer import SecurityLayer
from modelyard.security.settings import SecuritySettings

KEYS = {scope: f"my-openapi-fuzz-{scope}-key" for scope in ("inference", "read", "admin")}
CHECKS = (not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance)


@pytest.fixture(scope="module")
def api_schema() -> Iterator[Any]:
    os.environ.setdefault(PEPPER_ENV, "openapi-fuzz-pepper")
    mock = MockUpstream()
    folder = Path(tempfile.mkdtemp())
    metrics = GatewayMetrics()
    database = open_database(f"sqlite:///{folder / 'security.db'}")
    security = SecurityLayer(database, SecuritySettings(auth=True), metrics.registry)
    for scope, secret in KEYS.items():
        security.keys.create(NewKey(scope, scopes=(scope,)), "test", secret=secret)
    runtime = Runtime(
        StaticUpstreams(metrics, {"mock-model": [mock.url]}),
        metrics,
        RoutingMetrics(metrics.registry),
        GatewaySettings(max_body_bytes=65536),
        ObservabilitySettings(log_requests=False, request_log=False),
        request_log=None,
        security=security,
        state=StoredState(open_database(f"sqlite:///{folder / 'state.db'}")),  # files, batches, stored responses
    )
    try:
        yield schemathesis.openapi.from_asgi("/openapi.json", runtime.app)
    finally:
        mock.stop()


def test_no_server_error_and_no_answer_outside_the_document(api_schema: Any) -> None:
    failures: list[str] = []
    statuses: dict[int, int] = {}
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) > 20
    for operation in operations:

        @settings(
            max_examples=5, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck), database=None
        )
        @given(case=operation.as_strategy())
        def run(case: Any) -> None:
            for key in (*KEYS.values(), None):
                response = case.call(headers={"authorization": f"Bearer {key}"} if key else {})
                statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
                try:
                    case.validate_response(response, checks=CHECKS)
                except AssertionError as failure:
                    failures.append(f"{case.method} {case.path} key={key}: {failure}"[:600])

        run()
    assert not failures, "\n".join(failures[:20]) + f"\n({len(failures)} failures)"
    print(f"{sum(statuses.values())} calls over {len(operations)} operations, by status: {sorted(statuses.items())}")
    assert statuses.keys() >= {200, 400, 401, 403, 404}  # accepted, refused and unauthorised calls were all made


BATCH_FILE = b"".join(
    b'{"custom_id": "r%d", "method": "POST", "url": "/v1/chat/completions", "body": {"model": "mock-model", '
    b'"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}}\n' % n
    for n in range(2)
)


def _what_a_client_knows(case: Any) -> None:
    """What no schema can say and every client knows: the model this gateway serves, and a batch file of valid
    JSONL lines (each line's own shape is checked line by line). Everything else stays as generated."""
    if not isinstance(case.body, dict):
        return
    if case.method == "POST" and case.operation.path == "/v1/responses":
        case.body["model"] = "mock-model"
    elif case.method == "POST" and case.operation.path == "/v1/files":
        case.body["file"] = BATCH_FILE


@pytest.mark.parametrize("scope", sorted(KEYS))
def test_stateful_sequences_along_the_links_stay_within_the_document(api_schema: Any, scope: str) -> None:
    """Each scenario is a chain of calls, the next one taking a value of an earlier answer through a link, all
    with one key (what it created is its own); the read and inference keys meet refusals along the admin links."""
    failures: list[str] = []
    steps: dict[str, int] = {}
    api_schema.config.generation.update(modes=[GenerationMode.POSITIVE])  # chains of calls meant to succeed
    # Each key's own part of the API (the refusals of the rest are the test above's): inference keys the
    # OpenAI-shaped endpoints, read and admin keys the admin API.
    part = api_schema.include(path_regex="^/v1/" if scope == "inference" else "^/admin/")
    base = part.as_state_machine()

    class Machine(base):  # type: ignore[misc, valid-type]
        def before_call(self, case: Any) -> None:
            # The key of this run, in place of any the generator made up for the document's security scheme.
            case.headers = {**(case.headers or {}), "authorization": f"Bearer {KEYS[scope]}"}
            _what_a_client_knows(case)

        def validate_response(self, response: Any, case: Any, **kwargs: Any) -> None:
            label = f"{case.method} {case.operation.path} {response.status_code}"
            steps[label] = steps.get(label, 0) + 1
            try:
                case.validate_response(response, checks=CHECKS)
            except AssertionError as failure:
                failures.append(f"{label}: {failure}"[:600])

    Machine.run(
        settings=settings(
            max_examples=40,
            stateful_step_count=6,
            deadline=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
            database=None,
        )
    )
    assert not failures, "\n".join(failures[:20]) + f"\n({len(failures)} failures)"
    print(f"{scope}: {sum(steps.values())} calls: {sorted(steps.items())}")
    followed = {label.rsplit(" ", 1)[0] for label, _ in steps.items()}
    if scope == "admin":  # the links were followed: what was created was then read and changed
        assert {"GET /admin/keys/{id}", "POST /admin/keys/{id}/revoke"} <= followed
    if scope == "inference":
        assert {"GET /v1/files/{id}", "POST /v1/batches", "GET /v1/batches/{id}"} <= followed
