"""Pure decisions: parsing references, what to serve, where each id goes during a switch."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from modelyard.deploy.plan import choose_routes, serving_plan
from modelyard.deploy.routes import desired_instances, instances_to_retire
from modelyard.registry.card import model_card, render_markdown
from modelyard.registry.errors import InvalidRequest
from modelyard.registry.records import AliasRecord, EventRecord, ModelRecord, RegistrySnapshot, VersionRecord
from modelyard.registry.references import ModelRef, parse_ref, parse_version_number

NOW = datetime(2026, 11, 23, tzinfo=UTC)


def _version(model: str, number: int, archived: bool = False) -> VersionRecord:
    return VersionRecord(
        model=model,
        number=number,
        artifact_uri=f"/models/{model}-{number}.gguf",
        sha256=f"{number:064d}",
        size_bytes=100,
        format="gguf",
        quantization="Q4_K_M",
        architecture="gemma3",
        parameter_count=1,
        context_length=1,
        license="",
        base_model="",
        parent=None,
        training_data=(),
        fine_tuning_data=(),
        lineage_notes="",
        header={},
        created_by="t",
        created_at=NOW,
        archived_at=NOW if archived else None,
    )


def _model(name: str, versions: list[VersionRecord], **aliases: int) -> ModelRecord:
    return ModelRecord(
        name=name,
        description="",
        owner="",
        tags={},
        created_by="t",
        created_at=NOW,
        versions=tuple(versions),
        aliases=tuple(AliasRecord(a, v, "t", NOW) for a, v in aliases.items()),
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("gemma", ModelRef("gemma")),
        ("gemma@canary", ModelRef("gemma", alias="canary")),
        ("gemma:12", ModelRef("gemma", version=12)),
        ("org/gemma-3:v2", ModelRef("org/gemma-3", version=2)),
    ],
)
def test_references_parse(text: str, expected: ModelRef) -> None:
    assert parse_ref(text) == expected
    assert str(expected) in (text, text.replace(":v", ":"))


@pytest.mark.parametrize("text", ["", "gemma:0", "gemma:x", "gemma@", "gemma@Prod", "-gemma", "a b"])
def test_bad_references_are_refused(text: str) -> None:
    with pytest.raises(InvalidRequest):
        parse_ref(text)


def test_plan_serves_aliased_versions_and_explains_the_rest() -> None:
    gemma = _model(
        "gemma",
        [_version("gemma", 1), _version("gemma", 2), _version("gemma", 3, archived=True), _version("gemma", 4)],
        production=1,
        canary=2,
    )
    solo = _model("solo", [_version("solo", 1)])
    many = _model("many", [_version("many", 1), _version("many", 2)])
    plan = serving_plan(RegistrySnapshot(9, {"gemma": gemma, "solo": solo, "many": many}))
    assert set(plan.versions) == {"gemma:1", "gemma:2", "solo:1"}
    assert plan.routes == {
        "gemma": "gemma:1",
        "gemma@production": "gemma:1",
        "gemma@canary": "gemma:2",
        "gemma:1": "gemma:1",
        "gemma:2": "gemma:2",
        "solo": "solo:1",  # the only version serves the name even without an alias
        "solo:1": "solo:1",
    }
    assert "archived" in plan.unrouted["gemma:3"]
    assert "not deployed" in plan.unrouted["gemma:4"]
    assert "no 'production' alias" in plan.unrouted["many"]


def test_traffic_stays_on_the_old_version_until_the_new_one_is_ready() -> None:
    gemma = _model("gemma", [_version("gemma", 1), _version("gemma", 2)], production=2)
    plan = serving_plan(RegistrySnapshot(5, {"gemma": gemma}))
    previous = {"gemma": "gemma:1", "gemma@production": "gemma:1", "gemma:1": "gemma:1"}

    loading = choose_routes(plan, ready={"gemma:1"}, previous=previous)
    assert loading["gemma"] == "gemma:1" and loading["gemma@production"] == "gemma:1"
    wanted = desired_instances(plan, {})
    assert instances_to_retire({"gemma:1", "gemma:2"}, wanted, set(loading.values())) == []

    switched = choose_routes(plan, ready={"gemma:1", "gemma:2"}, previous=previous)
    assert switched["gemma"] == "gemma:2"
    assert instances_to_retire({"gemma:1", "gemma:2"}, wanted, set(switched.values())) == ["gemma:1"]

    first_start = choose_routes(plan, ready=set(), previous={}, hold=False)
    assert first_start["gemma"] == "gemma:2"  # nothing to hold on to: route and answer 503 until ready


def test_model_card_tells_identity_provenance_and_history() -> None:
    version = _version("gemma", 2)
    gemma = _model("gemma", [_version("gemma", 1), version], production=2)
    events = [EventRecord(1, "gemma", "alias_moved", None, "production", 1, 2, "bob", NOW)]
    card = model_card(gemma, version, events)
    assert card["key"] == "gemma:2" and card["aliases"] == ["production"] and card["status"] == "serving"
    assert card["identity"]["sha256"] == version.sha256
    markdown = render_markdown(card)
    for heading in ("# gemma:2", "## Identity", "## Architecture and quantization", "## Provenance", "## History"):
        assert heading in markdown
    assert "alias 'production' moved 1 → 2" in markdown


@pytest.mark.parametrize("text", ["0", "-1", "x", str(2**63), "9" * 5000, "v" + str(2**64)])
def test_a_version_number_the_database_cannot_hold_is_invalid(text: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        parse_version_number(text)
    assert len(str(refused.value)) < 200
    assert parse_version_number(str(2**63 - 1)) == 2**63 - 1
