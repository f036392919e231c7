"""The endpoint table is the one place endpoints are declared: every row has a scope and a spec entry, and the
served ``/openapi.json`` lists exactly the table's operations."""

from __future__ import annotations

import asyncio

from openapi_spec_validator import validate

from inprocess import serving
from modelyard.api.endpoint import CONSOLE, METRICS, PARAMETERS, path_parameters
from modelyard.api.endpoints import ENDPOINTS, SERVICES
from modelyard.security.keys import SCOPES


def test_every_endpoint_declares_a_scope_a_summary_and_a_handler_of_a_known_service() -> None:
    services = {s.__name__: s for s in SERVICES}
    for endpoint in ENDPOINTS:
        assert endpoint.scope in (*SCOPES, METRICS, CONSOLE, None), endpoint
        assert endpoint.summary and endpoint.tag, endpoint
        assert endpoint.service in services, endpoint
        assert getattr(services[endpoint.service], endpoint.handler.__name__) is endpoint.handler
        assert all(name in PARAMETERS for name in path_parameters(endpoint.path)), endpoint.path
        if endpoint.path.startswith("/v1/"):
            assert endpoint.scope == "inference"
        if endpoint.path.startswith("/admin/"):
            assert endpoint.scope == ("read" if endpoint.method == "GET" else "admin"), endpoint
        if endpoint.scope == CONSOLE:  # the console's own session cookie; only its login and assets are public
            assert endpoint.path.startswith("/console/") and endpoint.tag == "console", endpoint


def test_the_served_document_lists_exactly_the_tables_operations() -> None:
    async def scenario() -> dict:
        async with serving({}) as gateway:
            response = await gateway.client.get("/openapi.json")
            assert response.status_code == 200
            return response.json()

    document = asyncio.run(scenario())
    validate(document)
    served = {(method.upper(), path) for path, item in document["paths"].items() for method in item}
    declared = {(e.method, e.path) for e in ENDPOINTS}
    assert served == declared
    for endpoint in ENDPOINTS:
        operation = document["paths"][endpoint.path][endpoint.method.lower()]
        assert operation["summary"] == endpoint.summary
        public = endpoint.scope is None or endpoint.scope == METRICS
        assert (operation.get("security") == []) == public, endpoint.path
        names = [p["name"] for p in operation.get("parameters", []) if p["in"] == "path"]
        assert names == path_parameters(endpoint.path)
        if endpoint.body is not None:
            ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
            assert ref.rsplit("/", 1)[1] in document["components"]["schemas"]
