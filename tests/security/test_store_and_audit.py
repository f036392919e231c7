"""Keys, spend and the audit chain in a real database (SQLite here, PostgreSQL in the e2e tests)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from modelyard.audit.log import AuditLog
from modelyard.security.key_store import KeyRequestError, KeyStore, NewKey
from modelyard.security.keys import KeyHasher, KeyLimits
from modelyard.store import migrate
from modelyard.store.database import Database


@pytest.fixture
def database(tmp_path: Path) -> Database:
    db = Database(f"sqlite:///{tmp_path / 'sec.db'}")
    migrate.upgrade(db)
    yield db
    db.dispose()


def test_secret_is_never_stored_and_grants_are_found_by_hash(database: Database) -> None:
    hasher = KeyHasher(b"pepper")
    store = KeyStore(database, hasher)
    record, secret = store.create(NewKey("team-a", ("inference",), limits=KeyLimits(rpm=5)), "tester")
    assert secret.startswith("my-") and len(secret) == 46
    with database.connection() as connection:
        dump = " ".join(str(row) for row in connection.execute(text("SELECT * FROM api_keys")))
    assert secret not in dump and secret[3:] not in dump
    _revision, grants, _ = store.grants()
    assert grants[hasher(secret)].id == record.id and grants[hasher(secret)].limits.rpm == 5
    assert KeyHasher(b"other")(secret) not in grants  # the pepper matters


def test_revocation_bumps_the_revision_and_removes_the_grant(database: Database) -> None:
    hasher = KeyHasher(b"p")
    store = KeyStore(database, hasher)
    record, secret = store.create(NewKey("k"), "tester")
    before = store.revision()
    store.revoke(record.id, "tester")
    assert store.revision() > before
    assert hasher(secret) not in store.grants()[1]
    assert store.get(record.id).status == "revoked"
    with pytest.raises(KeyRequestError):
        store.revoke("key_nope", "tester")


def test_bootstrap_creates_one_admin_key_only_on_an_empty_table(database: Database, monkeypatch) -> None:
    monkeypatch.delenv("MODELYARD_ADMIN_KEY", raising=False)
    store = KeyStore(database, KeyHasher(b"p"))
    secret = store.ensure_bootstrap("gateway")
    assert secret and store.count() == 1
    assert store.ensure_bootstrap("gateway") is None and store.count() == 1
    assert set(store.list()[0].scopes) == {"admin", "read", "inference"}


def test_spend_is_added_per_key_and_period(database: Database) -> None:
    store = KeyStore(database, KeyHasher(b"p"))
    store.add_spend([("key_a", "m2026-11", 10, 0.5, 1)])
    store.add_spend([("key_a", "m2026-11", 5, 0.25, 1), ("key_b", "m2026-11", 1, 0.0, 1)])
    rows = {r["key_id"]: r for r in store.spend(["m2026-11"])}
    assert rows["key_a"]["tokens"] == 15 and rows["key_a"]["cost_usd"] == pytest.approx(0.75)
    assert rows["key_a"]["requests"] == 2


def test_audit_chain_verifies_and_names_an_edited_record(database: Database) -> None:
    store = KeyStore(database, KeyHasher(b"p"))
    record, _ = store.create(NewKey("k1"), "alice")
    store.revoke(record.id, "bob")
    store.set_expiry(store.create(NewKey("k2"), "alice")[0].id, datetime.now(UTC) + timedelta(days=1), "carol")
    log = AuditLog(database)
    result = log.verify()
    assert result.ok and result.checked == 4
    assert [r.action for r in log.list()] == ["key.expire", "key.create", "key.revoke", "key.create"]
    with database.engine.begin() as connection:
        connection.execute(text("UPDATE audit_log SET actor = 'mallory' WHERE id = 2"))
    broken = log.verify()
    assert not broken.ok and broken.record_id == 2 and "edited" in broken.problem


def test_audit_chain_names_a_deleted_record_and_a_deleted_tail(database: Database) -> None:
    log = AuditLog(database)
    for i in range(5):
        log.append("tester", "deployment.reload", f"d{i}", None, {"n": i})
    with database.engine.begin() as connection:
        connection.execute(text("DELETE FROM audit_log WHERE id = 3"))
    broken = log.verify()
    assert broken.record_id == 3 and "missing" in broken.problem
    with database.engine.begin() as connection:
        connection.execute(text("DELETE FROM audit_log WHERE id >= 3"))
    tail = log.verify()
    assert not tail.ok and tail.record_id == 3 and "newest" in tail.problem


def test_a_keys_priority_class_is_stored_with_its_limits(database: Database) -> None:
    hasher = KeyHasher(b"pepper")
    store = KeyStore(database, hasher)
    _, secret = store.create(NewKey("nightly", ("inference",), limits=KeyLimits(priority="batch")), "tester")
    _, plain = store.create(NewKey("app", ("inference",)), "tester")
    _revision, grants, _ = store.grants()
    assert grants[hasher(secret)].limits.priority == "batch"
    assert grants[hasher(plain)].limits.priority == "interactive"
    with pytest.raises(KeyRequestError, match="priority"):
        store.create(NewKey("x", ("inference",), limits=KeyLimits(priority="urgent")), "tester")
