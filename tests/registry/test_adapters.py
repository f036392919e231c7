"""LoRA adapters in the registry: recognised by their artifact, registered only on a base of the format they apply
to, with their fine-tuning provenance, and never served on their own (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from modelyard.deploy.plan import serving_plan
from modelyard.registry.adapters import (
    LORA_GGUF,
    LORA_PEFT,
    FineTuning,
    adapter_rank,
    fine_tuning_of,
    serving_problem,
)
from modelyard.registry.card import model_card
from modelyard.registry.errors import InvalidRequest
from modelyard.registry.integrity import IntegrityChecker
from modelyard.registry.references import parse_ref
from modelyard.registry.registration import Declared, register_file
from modelyard.registry.store import RegistryStore

from registry.gguf_files import write_lora_gguf
from registry.hf_dirs import write_hf_dir, write_peft_dir

RECIPE = FineTuning(
    dataset="quorvath.jsonl",
    dataset_sha256="ab" * 32,
    examples=32,
    steps=60,
    rank=8,
    alpha=16.0,
    learning_rate=2e-3,
    target_modules=("q_proj", "v_proj"),
    base="tiny:2",
    base_sha256="cd" * 32,
    seconds=90.5,
    final_loss=0.12,
)


@pytest.fixture
def bases(
    store: RegistryStore, checker: IntegrityChecker, gguf_file: Callable[..., Path], tmp_path: Path
) -> tuple[str, str]:
    """``tiny:1`` (a GGUF) and ``tiny:2`` (its HF form, parent tiny:1)."""
    gguf = register_file(store, checker, gguf_file(1), "tiny", Declared(), "t")
    hf = register_file(store, checker, write_hf_dir(tmp_path / "hf"), "tiny", Declared(parent=parse_ref("tiny:1")), "t")
    return gguf.key, hf.key


def test_adapters_register_on_their_base_with_the_fine_tuning_recorded(
    store: RegistryStore, checker: IntegrityChecker, tmp_path: Path, bases: tuple[str, str]
) -> None:
    gguf_key, hf_key = bases
    peft = register_file(
        store,
        checker,
        write_peft_dir(tmp_path / "peft"),
        "tiny-qa",
        Declared(parent=parse_ref(hf_key), fine_tuning=RECIPE),
        "t",
    )
    lora = register_file(
        store,
        checker,
        write_lora_gguf(tmp_path / "lora.gguf"),
        "tiny-qa",
        Declared(parent=parse_ref(gguf_key), fine_tuning=RECIPE),
        "t",
    )
    assert (peft.format, peft.parent, lora.format, lora.parent) == (LORA_PEFT, hf_key, LORA_GGUF, gguf_key)
    assert fine_tuning_of(store.get_version("tiny-qa", 1)) == RECIPE
    assert adapter_rank(peft) == 8 and peft.header["lora"]["target_modules"] == ["q_proj", "v_proj"]
    assert lora.header["adapter"] == {"type": "lora", "alpha": 16.0}
    assert lora.fine_tuning_data[0] == f"quorvath.jsonl (sha256 {'ab' * 32}, 32 examples)"
    assert "r=8 alpha=16 lr=0.002 steps=60 modules=q_proj,v_proj on tiny:2" in lora.fine_tuning_data[1]
    card = model_card(store.get_model("tiny-qa"), lora, store.events("tiny-qa"))
    assert card["provenance"]["parent_version"] == gguf_key
    assert card["identity"]["format"] == LORA_GGUF


def test_an_adapter_without_a_parent_or_on_the_wrong_kind_of_base_is_refused(
    store: RegistryStore, checker: IntegrityChecker, tmp_path: Path, bases: tuple[str, str]
) -> None:
    gguf_key, hf_key = bases
    lora = write_lora_gguf(tmp_path / "lora.gguf")
    with pytest.raises(InvalidRequest, match=r"must name the base version it was trained on: --parent"):
        register_file(store, checker, lora, "tiny-qa", Declared(), "t")
    with pytest.raises(InvalidRequest, match=r"lora-gguf adapter applies to a gguf base, but tiny:2 is hf"):
        register_file(store, checker, lora, "tiny-qa", Declared(parent=parse_ref(hf_key)), "t")
    peft = write_peft_dir(tmp_path / "peft")
    with pytest.raises(InvalidRequest, match=r"lora-peft adapter applies to a hf base, but tiny:1 is gguf"):
        register_file(store, checker, peft, "tiny-qa", Declared(parent=parse_ref(gguf_key)), "t")
    register_file(store, checker, peft, "tiny-qa", Declared(parent=parse_ref(hf_key)), "t")
    other = write_peft_dir(tmp_path / "peft2", seed=2.0)
    with pytest.raises(InvalidRequest, match=r"tiny-qa:1 is itself a LoRA adapter"):
        register_file(store, checker, other, "tiny-qa", Declared(parent=parse_ref("tiny-qa:1")), "t")
    assert [v.number for v in store.get_model("tiny-qa").versions] == [1]  # nothing half-registered


def test_an_adapter_is_not_served_on_its_own_and_only_on_its_parent(
    store: RegistryStore, checker: IntegrityChecker, tmp_path: Path, bases: tuple[str, str], gguf_file: Callable
) -> None:
    gguf_key, _ = bases
    lora = register_file(
        store, checker, write_lora_gguf(tmp_path / "l.gguf"), "tiny-qa", Declared(parent=parse_ref(gguf_key)), "t"
    )
    plan = serving_plan(store.snapshot())
    assert "tiny-qa:1" not in plan.versions and "tiny-qa" not in plan.routes  # no engine of its own
    for route in ("tiny-qa", "tiny-qa:1", "tiny-qa@production"):
        assert plan.unrouted[route] == (
            "tiny-qa:1 is a LoRA adapter of tiny:1; it cannot be served on its own. Serve it on its base: a "
            "deployments target with model: tiny:1 and adapter: tiny-qa:1."
        )
    other = register_file(store, checker, gguf_file(7), "other", Declared(), "t")
    base = store.get_version("tiny", 1)
    assert serving_problem(base, lora, 1.0, "llama.cpp") is None
    assert serving_problem(other, lora, 1.0, "llama.cpp") == (
        "tiny-qa:1 is a LoRA adapter of tiny:1, not of other:1: an adapter is served only on the base it was "
        "trained on."
    )
    assert "is not a LoRA adapter" in str(serving_problem(base, other, 1.0, "llama.cpp"))


def test_a_peft_directory_that_is_not_lora_is_refused(
    store: RegistryStore, checker: IntegrityChecker, tmp_path: Path, bases: tuple[str, str]
) -> None:
    root = write_peft_dir(tmp_path / "ia3")
    (root / "adapter_config.json").write_text('{"peft_type": "IA3"}')
    with pytest.raises(InvalidRequest, match="does not describe a LoRA adapter"):
        register_file(store, checker, root, "tiny-qa", Declared(parent=parse_ref(bases[1])), "t")
