"""Schemathesis over the whole OpenAPI document (api/openapi.py), in-process: the product's runtime and ASGI app
over fake upstreams, keys required, and every generated request sent with a key of each scope (inference, read,
admin) and with none. No answer may be a server error or disagree with the document (status declared, body
matching its schema, content type)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
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
from modelyard.roles.runtime import Runtime
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
