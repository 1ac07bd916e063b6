"""Schema versions and migrations of the state database, on real SQLite files (PostgreSQL's: test_state_pg.py)."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from madengine.errors import StateError
from madengine.state.model import Status
from madengine.state.schema import MIGRATIONS, SCHEMA_VERSION, _statements, migrate, schema_version
from madengine.state.store import StateStore

pytestmark = pytest.mark.sqlite_only  # the files, PRAGMAs and sqlite_master of SQLite

TABLES = {"meta", "applies", "images", "attempts", "perf"}


def tables(path: Path) -> set[str]:
    with sqlite3.connect(path) as conn:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")} - {
            "sqlite_sequence"}


def raw(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path, isolation_level=None)


def test_fresh_file_is_migrated_to_the_current_version(db: Path) -> None:
    assert not db.parent.exists()
    with StateStore.open(db) as store:
        assert store.serial() == 0
        assert store.integrity_check() == "ok"
    assert tables(db) == TABLES
    conn = raw(db)
    assert schema_version(conn) == SCHEMA_VERSION == len(MIGRATIONS)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"  # persistent in the file
    index = {r[1] for r in conn.execute("PRAGMA index_list(attempts)")}
    assert "attempts_by_address" in index
    assert [r[2] for r in conn.execute("PRAGMA index_info(attempts_by_address)")] == ["address", "id"]


def test_reopening_is_idempotent_and_keeps_the_data(db: Path) -> None:
    with StateStore.open(db) as store:
        store.begin_apply("sha256:lock")
    before = db.read_bytes() if db.exists() else b""
    for _ in range(3):
        with StateStore.open(db) as store:
            assert store.serial() == 1
            assert [a.lock_hash for a in store.applies()] == ["sha256:lock"]
    assert tables(db) == TABLES
    conn = raw(db)
    assert migrate(conn, str(db)) == SCHEMA_VERSION  # nothing left to do
    assert before  # the file exists and reopening it did not fail


def test_a_newer_schema_is_refused(db: Path) -> None:
    StateStore.open(db).close()
    raw(db).execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION + 1),))
    with pytest.raises(StateError) as info:
        StateStore.open(db)
    message = info.value.diagnostics[0]
    assert f"schema version {SCHEMA_VERSION + 1}, newer than this madengine knows ({SCHEMA_VERSION})" in str(
        info.value)
    assert "upgrade madengine" in message.hint


def test_forward_migrations_apply_in_order_and_keep_data(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    conn = raw(path)
    assert migrate(conn, "m.db", MIGRATIONS) == 0
    conn.execute("INSERT INTO applies (lock_hash, serial, started_at, host, pid) VALUES ('h', 1, 't', 'x', 1)")
    v2 = "ALTER TABLE applies ADD COLUMN note TEXT NOT NULL DEFAULT 'v2';"
    v3 = "UPDATE applies SET note = note || '+v3'; CREATE TABLE extra (x TEXT); INSERT INTO extra VALUES ('a;b');"
    assert migrate(conn, "m.db", (*MIGRATIONS, v2, v3)) == SCHEMA_VERSION
    assert schema_version(conn) == SCHEMA_VERSION + 2
    assert conn.execute("SELECT lock_hash, note FROM applies").fetchall() == [("h", "v2+v3")]
    assert conn.execute("SELECT x FROM extra").fetchall() == [("a;b",)]


def test_a_failing_migration_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    conn = raw(path)
    migrate(conn, "m.db")
    broken = "CREATE TABLE half (x TEXT); INSERT INTO no_such_table VALUES (1);"
    with pytest.raises(sqlite3.OperationalError):
        migrate(conn, "m.db", (*MIGRATIONS, broken))
    assert not conn.in_transaction
    assert schema_version(conn) == SCHEMA_VERSION
    assert "half" not in tables(path)


def test_another_sqlite_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    raw(path).execute("CREATE TABLE photos (id INTEGER)")
    with pytest.raises(StateError, match="not madengine's state"):
        StateStore.open(path)
    assert tables(path) == {"photos"}


def test_a_file_that_is_not_a_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    path.write_bytes(b"this is not sqlite\n" * 100)
    with pytest.raises(StateError, match="is not a usable state database"):
        StateStore.open(path)


def test_two_first_opens_at_once_migrate_once(db: Path) -> None:
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def open_it() -> None:
        try:
            barrier.wait()
            StateStore.open(db).close()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_it) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with StateStore.open(db) as store:
        assert store.serial() == 0
    assert raw(db).execute("SELECT count(*) FROM meta WHERE key = 'serial'").fetchone()[0] == 1


def test_statements_split_on_semicolons_outside_strings_and_comments() -> None:
    script = "-- a comment; with a semicolon\nCREATE TABLE t (x TEXT);\nINSERT INTO t VALUES ('a;b');\n-- tail\n"
    assert _statements(script) == ["-- a comment; with a semicolon\nCREATE TABLE t (x TEXT);",
                                   "INSERT INTO t VALUES ('a;b');"]
    with pytest.raises(ValueError, match="incomplete"):
        _statements("CREATE TABLE t (x TEXT)")


def version_1_store(db: Path) -> None:
    """A store as madengine wrote it at schema version 1, with one successful attempt of job:a@c/t#1."""
    db.parent.mkdir(parents=True)
    conn = raw(db)
    migrate(conn, str(db), MIGRATIONS[:1])
    conn.execute("INSERT INTO applies (lock_hash, serial, started_at, host, pid) VALUES ('h', 1, 't', 'x', 1)")
    conn.execute("INSERT INTO attempts (apply_id, address, node_hash, status, started_at, inputs) "
                 "VALUES (1, 'job:a@c/t#1', 'sha256:a', 'SUCCESS', '2026-12-01T00:00:00Z', '{}')")
    conn.close()


def test_a_version_1_store_gains_gate_verdicts_and_keeps_its_attempts(db: Path) -> None:
    version_1_store(db)
    with StateStore.open(db) as store:
        (old,) = store.latest_attempts().values()
        assert (old.address, old.gate) == ("job:a@c/t#1", None)
        attempt = store.start_attempt(1, "job:b@c/t#1", "sha256:b", {"model": "b"}, None, None)
        verdict = {"met": False, "metric": "gflops", "min": 1e9, "reason": "gflops 9 is below min 1e9"}
        store.finish_attempt(attempt, Status.SUCCESS, gate=verdict)
        assert store.latest_attempts()["job:b@c/t#1"].gate == verdict
        assert store.attempts(address="job:b@c/t#1")[0].gate == verdict
    assert schema_version(raw(db)) == SCHEMA_VERSION == 3


def test_a_reader_upgrades_an_older_store_it_can_write(db: Path) -> None:
    """`results` or `plan` right after upgrading madengine reads the old history (migrating it), rather than
    asking for an apply first."""
    version_1_store(db)
    with StateStore.open(db, readonly=True) as store:
        assert list(store.latest_attempts()) == ["job:a@c/t#1"]
    assert schema_version(raw(db)) == SCHEMA_VERSION


def test_a_version_2_store_keeps_every_row_with_handles_as_text_and_images_on_the_only_host(db: Path) -> None:
    db.parent.mkdir(parents=True)
    conn = raw(db)
    migrate(conn, str(db), MIGRATIONS[:2])
    conn.execute("INSERT INTO applies (lock_hash, serial, started_at, host, pid) VALUES ('h', 1, 't', 'x', 1)")
    for address, pid in (("job:a@c/t#1", 4242), ("job:b@c/t#1", None)):
        conn.execute("INSERT INTO attempts (apply_id, address, node_hash, status, started_at, inputs, pid) "
                     "VALUES (1, ?, 'sha256:a', 'RUNNING', '2026-12-01T00:00:00Z', '{}', ?)", (address, pid))
    conn.execute("INSERT INTO images (address, target, node_hash, tag, image_id, built_at, status, apply_id) "
                 "VALUES ('image:a@c', 'box', 'sha256:i', 'madengine/a:1', 'sha256:1', 't', 'SUCCESS', 1)")
    conn.close()
    with StateStore.open(db) as store:
        running = {a.address: a for a in store.running_attempts()}
        assert {a: (r.handle, r.facts) for a, r in running.items()} == {"job:a@c/t#1": ("4242", None),
                                                                        "job:b@c/t#1": (None, None)}
        assert [(k, r.image_id) for k, r in store.placements().items()] == [(("image:a@c", "box", ""), "sha256:1")]
        assert list(store.images()) == [("image:a@c", "box")]
    columns = {r[1]: r[2] for r in raw(db).execute("PRAGMA table_info(attempts)")}
    assert "pid" not in columns and columns["handle"] == "TEXT" and columns["facts"] == "TEXT"
    assert [r[2] for r in raw(db).execute("PRAGMA index_info(images_by_key)")] == ["address", "target", "host", "id"]
