"""The OpenAPI links (api/links.py): every one joins two endpoints of the table, and each lands in the document
as an ``operationRef`` that points at a real operation with the path parameters it fills."""

from __future__ import annotations

import re

import pytest

from modelyard.api.endpoints import ENDPOINTS
from modelyard.api.links import LINKS, Link, check_links, operation_ref
from modelyard.api.openapi import openapi_document


def test_every_link_lands_on_an_operation_of_the_document() -> None:
    document = openapi_document()
    found = 0
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            for response in operation["responses"].values():
                for name, link in response.get("links", {}).items():
                    found += 1
                    pointer = link["operationRef"].removeprefix("#/paths/")
                    target_path, target_method = pointer.rsplit("/", 1)
                    target_path = target_path.replace("~1", "/").replace("~0", "~")
                    target = document["paths"][target_path][target_method]
                    declared = {p["name"] for p in target.get("parameters", []) if p["in"] == "path"}
                    assert set(link.get("parameters", {})) <= declared, (path, method, name)
                    assert set(link.get("parameters", {})) | set(link.get("requestBody", {})), (path, name)
    assert found == len(LINKS) and found >= 20


def test_a_link_to_an_endpoint_that_does_not_exist_is_refused() -> None:
    check_links(LINKS, ENDPOINTS)
    with pytest.raises(ValueError, match=re.escape("no endpoint 'GET /admin/keyz/{id}'")):
        check_links([Link("Typo", "POST /admin/keys", "GET /admin/keyz/{id}", {"id": "$response.body#/id"})], ENDPOINTS)
    with pytest.raises(ValueError, match=r"has no path parameter \['key'\]"):
        check_links(
            [Link("Wrong", "POST /admin/keys", "GET /admin/keys/{id}", {"key": "$response.body#/id"})], ENDPOINTS
        )
    assert operation_ref("GET /admin/keys/{id}") == "#/paths/~1admin~1keys~1{id}/get"
