"""The registry store, on SQLite and PostgreSQL alike."""

from __future__ import annotations

import itertools
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from modelyard.audit.log import AuditLog
from modelyard.registry.errors import Conflict, InvalidRequest, NotFound
from modelyard.registry.integrity import IntegrityChecker
from modelyard.registry.references import ModelRef
from modelyard.registry.registration import Declared, register_file
from modelyard.registry.store import NewVersion, RegistryStore
from modelyard.roles.stores import registry_store
from modelyard.store import migrate
from modelyard.store.database import Database

GGUF = Callable[..., Path]


def _register(store: RegistryStore, checker: IntegrityChecker, path: Path, name: str = "tiny", **declared) -> object:
    return register_file(store, checker, path, name, Declared(**declared), actor="alice")


def test_register_records_header_facts_provenance_and_events(
    store: RegistryStore, checker: IntegrityChecker, gguf_file: GGUF
) -> None:
    v1 = _register(
        store,
        checker,
        gguf_file(1),
        training_data=("c4",),
        lineage_notes="first cut",
        description="a tiny model",
        owner="ml-platform",
        tags={"team": "search"},
    )
    assert (v1.key, v1.format, v1.quantization, v1.architecture) == ("tiny:1", "gguf", "ALL_F32", "llama")
    assert v1.parameter_count == 64 * 8 + 8
    assert v1.context_length == 256
    assert v1.license == "apache-2.0"  # from the header, nothing declared
    assert v1.training_data == ("c4",)
    assert v1.created_by == "alice"
    assert len(v1.sha256) == 64 and v1.size_bytes > 0

    v2 = _register(store, checker, gguf_file(2), parent=ModelRef("tiny", version=1), license="MIT")
    assert (v2.number, v2.parent, v2.license) == (2, "tiny:1", "MIT")

    model = store.get_model("tiny")
    assert (model.description, model.owner, dict(model.tags)) == ("a tiny model", "ml-platform", {"team": "search"})
    assert model.alias_map() == {"production": 1}  # the first version serves the name; the second waits
    kinds = [e.kind for e in store.events("tiny")]
    assert kinds == ["model_created", "version_registered", "alias_moved", "version_registered"]


def test_same_bytes_are_registered_once(store: RegistryStore, checker: IntegrityChecker, gguf_file: GGUF) -> None:
    path = gguf_file(1)
    _register(store, checker, path)
    copy = path.with_name("copy.gguf")
    copy.write_bytes(path.read_bytes())
    with pytest.raises(Conflict, match=r"already registered as tiny:1"):
        _register(store, checker, copy, name="other")
    assert [m.name for m in store.list_models()] == ["tiny"]


def test_a_file_that_is_not_gguf_is_refused_naming_what_it_is(
    store: RegistryStore, checker: IntegrityChecker, tmp_path: Path
) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("hello world")
    with pytest.raises(InvalidRequest, match=r"not a GGUF file: it starts with b'hell'"):
        _register(store, checker, notes)
    with pytest.raises(InvalidRequest, match="No file at"):
        _register(store, checker, tmp_path / "missing.gguf")


def test_alias_moves_rollback_and_history(store: RegistryStore, checker: IntegrityChecker, gguf_file: GGUF) -> None:
    for seed in (1, 2, 3):
        _register(store, checker, gguf_file(seed))
    assert store.move_alias("tiny", "production", 2, "bob").from_version == 1
    store.move_alias("tiny", "canary", 3, "bob")
    assert store.resolve(ModelRef("tiny")).number == 2
    assert store.resolve(ModelRef("tiny", alias="canary")).number == 3
    assert store.resolve(ModelRef("tiny", version=1)).number == 1

    back = store.rollback("tiny", "production", "carol")
    assert (back.from_version, back.to_version) == (2, 1)
    assert store.get_model("tiny").production == 1
    moves = [(e.alias, e.from_version, e.to_version, e.actor) for e in store.events("tiny") if e.kind == "alias_moved"]
    assert moves == [
        ("production", None, 1, "alice"),
        ("production", 1, 2, "bob"),
        ("canary", None, 3, "bob"),
        ("production", 2, 1, "carol"),
    ]
    removed = store.remove_alias("tiny", "canary", "bob")
    assert (removed.kind, removed.from_version) == ("alias_removed", 3)
    with pytest.raises(NotFound):
        store.resolve(ModelRef("tiny", alias="canary"))


def test_bad_references_fail_with_the_right_error(
    store: RegistryStore, checker: IntegrityChecker, gguf_file: GGUF
) -> None:
    _register(store, checker, gguf_file(1), name="a")
    _register(store, checker, gguf_file(2), name="b")
    with pytest.raises(NotFound, match="No registered model named 'nope'"):
        store.get_model("nope")
    with pytest.raises(NotFound, match="has no version 7"):
        store.move_alias("a", "production", 7, "x")
    with pytest.raises(InvalidRequest, match="can only point at a version of 'a'"):
        store.move_alias("a", "production", ModelRef("b", version=1), "x")
    with pytest.raises(InvalidRequest, match="Invalid alias"):
        store.move_alias("a", "Prod!", 1, "x")
    with pytest.raises(Conflict, match="no earlier version"):
        store.rollback("a", "production", "x")
    with pytest.raises(NotFound, match="no alias 'staging'"):
        store.rollback("a", "staging", "x")


def test_archive_hides_but_keeps_and_refuses_while_aliased(
    store: RegistryStore, checker: IntegrityChecker, gguf_file: GGUF
) -> None:
    _register(store, checker, gguf_file(1))
    _register(store, checker, gguf_file(2))
    with pytest.raises(Conflict, match="alias"):
        store.archive("tiny", 1, "x")
    archived = store.archive("tiny", 2, "dave")
    assert archived.archived and archived.archived_by == "dave"
    assert store.archive("tiny", 2, "dave").archived_at == archived.archived_at  # idempotent
    assert [v.number for v in store.get_model("tiny").active_versions()] == [1]
    assert store.get_version("tiny", 2).sha256 == archived.sha256  # the record is still there
    with pytest.raises(Conflict, match="archived"):
        store.move_alias("tiny", "staging", 2, "x")
    assert [e.kind for e in store.events("tiny")][-1] == "version_archived"


def test_versions_and_events_cannot_be_rewritten_even_by_hand(
    store: RegistryStore, checker: IntegrityChecker, gguf_file: GGUF
) -> None:
    _register(store, checker, gguf_file(1))
    for statement in (
        "UPDATE model_versions SET sha256 = 'forged'",
        "UPDATE model_versions SET artifact_uri = '/elsewhere'",
        "DELETE FROM model_versions",
        "UPDATE registry_events SET actor = 'someone else'",
        "DELETE FROM registry_events",
    ):
        with pytest.raises(DBAPIError, match=r"immutable|never deleted|append-only"), store.database.transaction() as s:
            s.execute(text(statement))
    assert store.get_version("tiny", 1).created_by == "alice"


def test_concurrent_promotions_never_lose_an_update(
    store: RegistryStore, checker: IntegrityChecker, gguf_file: GGUF
) -> None:
    for seed in (1, 2, 3):
        _register(store, checker, gguf_file(seed))
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def promote_repeatedly(target: int) -> None:
        start.wait()
        try:
            for _ in range(15):
                store.move_alias("tiny", "production", target, f"worker-{target}")
        except BaseException as exc:
            errors.append(exc)

    workers = [threading.Thread(target=promote_repeatedly, args=(n,)) for n in (2, 3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert errors == []
    moves = [e for e in store.events("tiny") if e.kind == "alias_moved" and e.alias == "production"][1:]
    assert len(moves) == 30  # every promotion is recorded
    for earlier, later in itertools.pairwise(moves):
        assert later.from_version == earlier.to_version  # each saw the result of the one before: no lost update
    assert store.get_model("tiny").production == moves[-1].to_version


def test_compare_and_set_lets_exactly_one_concurrent_promotion_win(
    store: RegistryStore, checker: IntegrityChecker, gguf_file: GGUF
) -> None:
    for seed in (1, 2, 3):
        _register(store, checker, gguf_file(seed))
    outcomes: dict[int, str] = {}
    start = threading.Barrier(2)

    def promote(target: int) -> None:
        start.wait()
        try:
            store.move_alias("tiny", "production", target, "ci", expected=1)
            outcomes[target] = "moved"
        except Conflict:
            outcomes[target] = "conflict"

    workers = [threading.Thread(target=promote, args=(n,)) for n in (2, 3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert sorted(outcomes.values()) == ["conflict", "moved"]
    winner = next(n for n, outcome in outcomes.items() if outcome == "moved")
    assert store.get_model("tiny").production == winner


def test_concurrent_registrations_of_one_new_model_get_distinct_numbers(
    store: RegistryStore, checker: IntegrityChecker, gguf_file: GGUF
) -> None:
    paths = [gguf_file(seed) for seed in range(1, 5)]
    results: list[int] = []
    start = threading.Barrier(len(paths))

    def register(path: Path) -> None:
        start.wait()
        results.append(_register(store, checker, path).number)

    workers = [threading.Thread(target=register, args=(p,)) for p in paths]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert sorted(results) == [1, 2, 3, 4]
    assert store.get_model("tiny").production in results


def test_migrations_are_idempotent_and_revision_tracks_events(
    store: RegistryStore, checker: IntegrityChecker, gguf_file: GGUF
) -> None:
    migrate.upgrade(store.database)
    assert migrate.current_revision(store.database) == migrate.head_revision()
    assert store.revision() == 0
    _register(store, checker, gguf_file(1))
    assert store.revision() == store.snapshot().revision == 3


def test_model_details_change_with_an_event_while_versions_stay(
    store: RegistryStore, checker: IntegrityChecker, gguf_file: GGUF
) -> None:
    from modelyard.registry.store import ModelDetails

    _register(store, checker, gguf_file(1), description="old", tags={"team": "a"})
    updated = store.update_model("tiny", ModelDetails(tags={"team": "a", "price_input_per_1k": "0.001"}), "eve")
    assert dict(updated.tags) == {"team": "a", "price_input_per_1k": "0.001"} and updated.description == "old"
    event = store.events("tiny")[-1]
    assert (event.kind, event.actor) == ("model_updated", "eve")
    assert event.detail["tags"]["from"] == {"team": "a"}
    with pytest.raises(NotFound):
        store.update_model("nope", ModelDetails(owner="x"), "eve")


_WRITER = """
import sys, itertools
from pathlib import Path
from modelyard.roles.stores import registry_store
from modelyard.registry.store import NewVersion
from modelyard.store.database import Database
store = registry_store(Database(sys.argv[1]))
for i in itertools.count(1):
    store.register(NewVersion("crashy", Path(f"/nowhere/{i}.gguf"), f"{i:064x}", 1, "gguf", alias="canary"), "writer")
    print(i, flush=True)
"""


def test_a_registry_writer_killed_mid_write_leaves_no_half_written_change(database: Database) -> None:
    """``kill -9`` of a process in the middle of a stream of registrations (each one version, its events, an alias
    move and its audit record, in one transaction): every committed change is whole, the audit chain verifies,
    and the database takes the next write at once."""
    writer = subprocess.Popen(
        [sys.executable, "-c", _WRITER, database.url.render_as_string(hide_password=False)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert writer.stdout is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and int((writer.stdout.readline() or "0 ").split()[0]) < 15:
        pass
    writer.send_signal(signal.SIGKILL)
    writer.wait(10)
    store = registry_store(database)
    versions = store.get_model("crashy").versions
    numbers = [v.number for v in versions]
    assert len(numbers) >= 15 and numbers == list(range(1, len(numbers) + 1))  # no gap, no half-written version
    registered = [e for e in store.events("crashy", limit=10_000) if e.kind == "version_registered"]
    assert len(registered) == len(numbers)
    assert store.get_model("crashy").alias_map()["canary"] == numbers[-1]
    verified = AuditLog(database).verify()
    assert verified.ok, verified.problem
    nxt = NewVersion("crashy", Path("/nowhere/next.gguf"), "f" * 64, 1, "gguf")
    assert store.register(nxt, "after").number == numbers[-1] + 1
