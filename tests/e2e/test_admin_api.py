"""The admin REST API (and the CLI's error handling) against a real gateway and registry."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from openapi_spec_validator import validate

from e2e.test_registry_serving import cli
from modelyard.engines.llamacpp_build import EngineBuild
from modelyard.registry.quantize import requantize

from conftest import MODEL
from gateway_process import GatewayProcess

pytestmark = pytest.mark.engine

V1, V2 = f"{MODEL}:1", f"{MODEL}:2"


def test_openapi_document_is_valid_and_describes_the_admin_api(gateway: GatewayProcess) -> None:
    document = httpx.get(gateway.url + "/openapi.json", timeout=10).json()
    validate(document)
    assert {"/v1/chat/completions", "/admin/models", "/admin/models/{name}/promote", "/admin/models/{name}/rollback",
            "/admin/models/{name}/aliases/{alias}", "/admin/models/{name}/card"} <= set(document["paths"])  # fmt: skip
    register = document["paths"]["/admin/models"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert register == {"$ref": "#/components/schemas/RegisterVersion"}
    assert "path" in document["components"]["schemas"]["RegisterVersion"]["required"]


@pytest.fixture
def admin_gateway(tmp_path: Path, engine_build: EngineBuild, default_model_path: Path) -> Iterator[GatewayProcess]:
    env = {"MODELYARD_DATA_DIR": str(tmp_path / "data")}
    process = GatewayProcess(tmp_path / "data", "--parallel", "2", "--ctx-size", "2048", "--registry-poll", "5",
                             env=env)  # fmt: skip
    try:
        process.wait_ready()
        yield process
    finally:
        process.stop()


def _wait_until(check: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition never became true"
        time.sleep(0.2)


def _error(response: httpx.Response, status: int, code: str | None = None) -> str:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    if code is not None:
        assert error["code"] == code
    return error["message"]


@pytest.mark.slow
def test_admin_api_registers_promotes_rolls_back_and_archives(
    admin_gateway: GatewayProcess, tmp_path: Path, engine_build: EngineBuild, default_model_path: Path
) -> None:
    api = httpx.Client(base_url=admin_gateway.url + "/admin", timeout=60, headers={"x-modelyard-actor": "ci-job"})
    models = api.get("/models").json()["data"]
    assert [(m["name"], m["aliases"]) for m in models] == [(MODEL, {"production": 1})]

    notes = tmp_path / "notes.txt"
    notes.write_text("not a model")
    assert "not a GGUF file" in _error(api.post("/models", json={"path": str(notes), "name": MODEL}), 400)
    assert "path" in _error(api.post("/models", json={"name": MODEL}), 400)
    assert "colour" in _error(api.post("/models", json={"path": "x", "name": MODEL, "colour": "red"}), 400)

    variant = requantize(engine_build.binary("llama-quantize"), default_model_path, tmp_path / "q2k.gguf", "Q2_K")
    body = {"path": str(variant), "name": MODEL, "parent": V1, "training_data": ["none: re-quantized"]}
    created = api.post("/models", json=body)
    assert created.status_code == 201, created.text
    assert (created.json()["key"], created.json()["quantization"], created.json()["created_by"]) == (
        V2,
        "Q2_K",
        "ci-job",
    )
    assert "already registered as gemma-3-270m:2" in _error(api.post("/models", json=body), 409, "conflict")

    assert _error(api.put(f"/models/{MODEL}/aliases/staging", json={"version": 9}), 404)
    assert _error(api.put(f"/models/{MODEL}/aliases/staging", json={"version": "two"}), 400)
    assert _error(api.get("/models/nope"), 404, "not_found")
    assert _error(api.get(f"/models/{MODEL}/versions/7"), 404)
    staged = api.put(f"/models/{MODEL}/aliases/staging", json={"version": 2})
    assert staged.json() == {**staged.json(), "from_version": None, "to_version": 2}

    def staging_serves_v2() -> bool:
        response = httpx.post(admin_gateway.url + "/v1/completions", timeout=60,
                              json={"model": f"{MODEL}@staging", "prompt": "Hi", "max_tokens": 2})  # fmt: skip
        return response.status_code == 200 and response.headers["x-modelyard-model-version"] == V2

    _wait_until(staging_serves_v2)  # the poke applies it at once, not at the 5 s poll

    assert "not 5 as expected" in _error(
        api.post(f"/models/{MODEL}/promote", json={"version": 2, "expected_version": 5}), 409
    )
    assert api.post(f"/models/{MODEL}/promote", json={"version": 2, "expected_version": 1}).json()["to_version"] == 2
    rolled_back = api.post(f"/models/{MODEL}/rollback").json()
    assert (rolled_back["from_version"], rolled_back["to_version"]) == (2, 1)
    assert api.get(f"/models/{MODEL}").json()["aliases"] == {"production": 1, "staging": 2}

    card = api.get(f"/models/{MODEL}/card", params={"version": 2}).json()
    assert (card["key"], card["architecture"]["quantization"], card["provenance"]["parent_version"]) == (V2, "Q2_K", V1)
    markdown = api.get(f"/models/{MODEL}/card", params={"format": "md"})
    assert markdown.headers["content-type"].startswith("text/markdown")
    assert markdown.text.startswith(f"# {V1}\n") and "## Provenance" in markdown.text

    assert "staging" in _error(api.post(f"/models/{MODEL}/versions/2/archive"), 409)
    assert api.delete(f"/models/{MODEL}/aliases/staging").json()["kind"] == "alias_removed"
    assert api.post(f"/models/{MODEL}/versions/2/archive").json()["archived_by"] == "ci-job"

    def v2_unserved() -> bool:
        return httpx.get(admin_gateway.url + f"/v1/models/{V2}", timeout=10).status_code == 404

    _wait_until(v2_unserved)
    assert "archived" in _error(httpx.get(admin_gateway.url + f"/v1/models/{V2}", timeout=10), 404)
    kinds = [e["kind"] for e in api.get(f"/models/{MODEL}/events").json()["data"]]
    assert kinds[-5:] == ["alias_moved", "alias_moved", "alias_moved", "alias_removed", "version_archived"]

    env = {"MODELYARD_DATA_DIR": admin_gateway.log_path.parent.as_posix()}
    refused = cli(env, "models", "alias", MODEL, "canary", "99", check=False)
    assert refused.returncode == 2 and "has no version 99" in refused.stderr
    wrong_model = cli(env, "models", "alias", MODEL, "canary", "other-model:1", check=False)
    assert wrong_model.returncode == 2 and "can only point at a version of" in wrong_model.stderr
    printed = cli(env, "models", "card", MODEL).stdout
    assert printed.startswith(f"# {V1}") and "Gemma" in printed
