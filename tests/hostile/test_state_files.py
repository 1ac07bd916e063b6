"""Hostile files madengine wrote and reads back: the lock, a saved plan, the freshness record, the state
store and the workspace lock. Each broken one is a config or state error naming the file, with a hint;
never a traceback, never "internal error", never a silent "up to date"."""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import sqlite3
from pathlib import Path

import pytest

from madengine.state.schema import SCHEMA_VERSION
from tests.conftest import RunCli, run_unprivileged

SCRIPT = "#!/usr/bin/env bash\necho \"performance: 42.5 samples_per_second\"\n"
MADFILE = """\
version: 1
models:
  - {name: a, scripts: run.sh, n_gpus: 0, params: {size: [1, 2, 3, 4, 5, 6, 7, 8]}}
contexts: {cpu: {gpu_vendor: NONE}}
targets: {here: {backend: local}}
runs:
  - {models: [a], repeat: 8}
"""
JOB = "job:a[size=1]@cpu/here#1"


@pytest.fixture(scope="module")
def applied(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project applied once: 64 jobs recorded, a lock, a freshness record, a saved plan."""
    from tests.conftest import run_cli

    root = tmp_path_factory.mktemp("applied")
    (root / "run.sh").write_text(SCRIPT)
    (root / "madfile.yaml").write_text(MADFILE)
    code, out, err = run_cli("apply", "--yes", "--parallelism", "2", cwd=root)
    assert code == 0, out + err
    code, out, err = run_cli("plan", "-o", "plan.json", cwd=root)
    assert code == 0, out + err
    # One file, no -wal or -shm that a reader left behind: copies of it (`project`) must not race their removal.
    with contextlib.closing(sqlite3.connect(state_db(root))) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    assert not list(state_db(root).parent.glob("state.db-*"))
    return root


@pytest.fixture
def project(applied: Path, tmp_path: Path) -> Path:
    root = tmp_path / "p"
    shutil.copytree(applied, root)
    return root


def state_db(root: Path) -> Path:
    return root / ".madengine" / "state.db"


def assert_named(code: int, err: str, expected: int, *words: str) -> None:
    """One clean error: the expected exit code, the words, a hint, no traceback, no internal error."""
    assert code == expected, err
    assert "internal error" not in err and "Traceback" not in err, err
    assert "hint:" in err, err
    for w in words:
        assert w in err, err


# --- madengine.lock ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("content", "words"), [
    (b"\x00\x01binary\xff\xfe", ("madengine.lock:1", "not UTF-8")),
    (b'{"version": 1, "images": [], "jobs": 5}', ("images: expected an object", "jobs: expected an object")),
    (b"[" * 100_000, ("nested too deeply",)),
    (b'{"version": 1, "images": {}, "jobs": ' + b"9" * 5000 + b"}", ("a number too long to read",)),
])
def test_a_broken_lock_is_a_config_error(run_cli: RunCli, project: Path, content: bytes,
                                         words: tuple[str, ...]) -> None:
    (project / "madengine.lock").write_bytes(content)
    for args in (("plan",), ("plan", "--locked"), ("apply", "--yes"), ("lock", "--check")):
        code, _, err = run_cli(*args, cwd=project)
        assert_named(code, err, 5, "madengine.lock", *words)


def test_a_lock_with_a_wrong_field_names_the_key(run_cli: RunCli, project: Path) -> None:
    lock = json.loads((project / "madengine.lock").read_text())
    lock["jobs"][JOB]["n_gpus"] = "two"
    lock["jobs"][JOB]["depends_on"] = ["image:nowhere"]
    del lock["jobs"]["job:a[size=2]@cpu/here#1"]["script"]
    (project / "madengine.lock").write_text(json.dumps(lock))
    code, _, err = run_cli("plan", "--locked", cwd=project)
    assert_named(code, err, 5, f"jobs['{JOB}'].n_gpus: expected an integer",
                 "jobs['job:a[size=2]@cpu/here#1']: missing key 'script'")
    lock["jobs"][JOB]["n_gpus"] = 0
    lock["jobs"]["job:a[size=2]@cpu/here#1"]["script"] = lock["jobs"][JOB]["script"]
    (project / "madengine.lock").write_text(json.dumps(lock))
    code, _, err = run_cli("plan", "--locked", cwd=project)
    assert_named(code, err, 5, "no image 'image:nowhere' in the lock")


# --- a saved plan ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("content", "words"), [
    ('{"format": "madengine-plan", "version": 1}', ("missing key 'lock_hash'", "missing key 'changes'")),
    ('{"format": "madengine-plan", "version": 1, "lock_hash": "x", "serial": 1, "changes": '
     '[{"address": "a", "kind": "job", "action": "fly", "reason": "", "hash": "", "targets": "here"}]}',
     ("changes[0].action: expected one of", "changes[0].targets: expected a list")),
    ("\udcff", ("not UTF-8",)),
    ('{"format": "madengine-plan", "version": 1, "serial": ' + "9" * 5000 + "}", ("a number too long to read",)),
])
def test_a_malformed_plan_file_is_a_config_error(run_cli: RunCli, project: Path, content: str,
                                                 words: tuple[str, ...]) -> None:
    (project / "bad.json").write_bytes(content.encode("utf-8", "surrogateescape"))
    code, _, err = run_cli("apply", "bad.json", cwd=project)
    assert_named(code, err, 5, "bad.json", *words)


# --- the freshness record: a cache, ignored when broken ------------------------------------------------


@pytest.mark.parametrize("breakage", ["huge", "nested", "wrong types"])
def test_a_broken_freshness_record_is_ignored(run_cli: RunCli, project: Path, breakage: str) -> None:
    record = project / ".madengine" / "cache" / "lock-fingerprint.json"
    assert run_cli("plan", cwd=project).code == 0  # the record of this directory (the copy's differs)
    data = json.loads(record.read_text())
    if breakage == "huge":
        data["images"] = float("inf")  # json writes Infinity, which json reads back
        record.write_text(json.dumps(data))
    elif breakage == "nested":
        record.write_text("[" * 100_000)
    else:
        data["tags"] = {"a": [1, {"x": None}]}
        data["extra"] = "MAD"
        record.write_text(json.dumps(data))
    code, out, err = run_cli("plan", "--detailed-exitcode", cwd=project)
    assert (code, err) == (0, ""), out + err
    assert "64 unchanged" in out


# --- the state store: rows ---------------------------------------------------------------------------


@pytest.mark.parametrize(("column", "value", "words"), [
    ("status", "EXPLODED", ("has an unknown status 'EXPLODED'",)),
    ("inputs", "{not json", ("inputs that are not a JSON object",)),
    ("inputs", "[1, 2]", ("inputs that are not a JSON object",)),
])
def test_a_state_row_madengine_cannot_have_written_is_a_state_error(
        run_cli: RunCli, project: Path, column: str, value: str, words: tuple[str, ...]) -> None:
    with sqlite3.connect(state_db(project)) as conn:
        conn.execute(f"UPDATE attempts SET {column} = ? WHERE address = ?", (value, JOB))
    for args in (("plan",), ("results",), ("state", "list"), ("state", "show", JOB), ("apply", "--yes")):
        code, _, err = run_cli(*args, cwd=project)
        assert_named(code, err, 1, "state.db: attempts row", JOB, *words, f"madengine state forget {JOB}")
    # The hint works: forgetting the address removes the row, and the next plan runs it again.
    code, out, err = run_cli("state", "forget", JOB, cwd=project)
    assert code == 0, out + err
    code, out, err = run_cli("plan", cwd=project)
    assert code == 0 and "1 to run, 63 unchanged" in out, out + err


def test_a_perf_row_with_an_unknown_status_is_a_state_error(run_cli: RunCli, project: Path) -> None:
    with sqlite3.connect(state_db(project)) as conn:
        conn.execute("UPDATE perf SET status = 'WEIRD' WHERE attempt_id = "
                     "(SELECT max(id) FROM attempts WHERE address = ?)", (JOB,))
    code, _, err = run_cli("results", cwd=project)
    assert_named(code, err, 1, "perf row", JOB, "'WEIRD'")


@pytest.mark.parametrize(("status", "inputs", "command", "words"), [
    ("GONE", "{}", "show", "has an unknown status 'GONE'"),
    ("SUCCESS", "{oops", "list", "has inputs that are not a JSON object"),
])
def test_an_image_row_madengine_cannot_have_written_is_a_state_error(
        run_cli: RunCli, project: Path, status: str, inputs: str, command: str, words: str) -> None:
    with sqlite3.connect(state_db(project)) as conn:
        conn.execute("INSERT INTO images (address, target, node_hash, tag, built_at, status, inputs) "
                     "VALUES ('image:x@cpu', 'here', 'sha256:0', 'madengine/x:0', '2026-01-01T00:00:00Z', ?, ?)",
                     (status, inputs))
    code, _, err = run_cli("state", command, *(["image:x@cpu"] if command == "show" else []), cwd=project)
    assert_named(code, err, 1, "images row for here (image:x@cpu)", words, "madengine state forget image:x@cpu")


# --- the state store: the file -------------------------------------------------------------------------


def test_a_garbled_page_is_noticed_by_every_command(run_cli: RunCli, project: Path) -> None:
    db = state_db(project)
    with sqlite3.connect(db) as conn:
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        # A leaf page of the attempts table, past the first pages (plan reads through the indexes
        # and did not notice such a page: it said "up to date").
        try:
            pages = [p for (p,) in conn.execute(
                "SELECT pageno FROM dbstat WHERE name = 'attempts' AND pagetype = 'leaf' ORDER BY pageno")]
        except sqlite3.OperationalError:  # an SQLite built without dbstat: the pages past the schema's
            pages = list(range(3, conn.execute("PRAGMA page_count").fetchone()[0] + 1))
    conn.close()
    page = pages[len(pages) // 2]
    assert page >= 3
    with db.open("r+b") as f:
        f.seek((page - 1) * page_size + 16)
        f.write(random.Random(7).randbytes(page_size // 2))
    before = db.read_bytes()
    for args in (("plan",), ("results",), ("state", "list"), ("apply", "--yes")):
        code, out, err = run_cli(*args, cwd=project)
        assert_named(code, err, 1, f"{db} is damaged", f"mv {db} {db}.damaged")
        assert "up to date" not in out
    assert db.read_bytes() == before  # nothing was written into it


@pytest.mark.parametrize("kind", ["directory", "fifo"])
def test_something_else_in_place_of_the_store_is_a_state_error(run_cli: RunCli, project: Path, kind: str) -> None:
    db = state_db(project)
    db.unlink()
    if kind == "directory":
        db.mkdir()
    else:
        os.mkfifo(db)  # SQLite would wait on it forever, through every signal
    for args in (("plan",), ("results",), ("state", "list"), ("apply", "--yes")):
        code, _, err = run_cli(*args, cwd=project, timeout=30)
        assert_named(code, err, 1, f"the state database {db} is", f"mv {db} ")


def test_a_store_it_may_not_read_is_named_as_such(project: Path) -> None:
    db = state_db(project)
    db.chmod(0)
    try:
        for args in (("plan",), ("results",), ("state", "list"), ("apply", "--yes")):
            code, _, err = run_unprivileged(args, project)
            assert_named(code, err, 1, f"cannot read {db}: permission denied", f"ls -l {db}")
            assert len(err.splitlines()) == 1 and "cannot write" not in err, err
    finally:
        db.chmod(0o644)


def test_a_store_of_a_newer_schema_is_refused_naming_the_version(run_cli: RunCli, project: Path) -> None:
    db = state_db(project)
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA user_version = 7")
    for args in (("plan",), ("results",), ("state", "list"), ("apply", "--yes")):
        code, _, err = run_cli(*args, cwd=project)
        assert_named(code, err, 1, f"state schema version 7, newer than this madengine knows ({SCHEMA_VERSION})",
                     "upgrade",
                     f"move {db} aside")


def test_a_new_store_records_its_schema_version_in_the_header(run_cli: RunCli, applied: Path) -> None:
    # Closed here, not whenever the collector gets to it: closing deletes the shared project's -wal and -shm,
    # which a later test's copy of the project must not see vanish under it.
    with contextlib.closing(sqlite3.connect(state_db(applied))) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


# --- the workspace lock --------------------------------------------------------------------------------


def test_a_directory_in_place_of_the_workspace_lock_is_a_state_error(run_cli: RunCli, project: Path) -> None:
    lock = project / ".madengine" / "state.lock"
    lock.unlink()
    lock.mkdir()
    for args in (("apply", "--yes"), ("unlock",), ("state", "forget", JOB)):
        code, _, err = run_cli(*args, cwd=project)
        assert_named(code, err, 1, f"the workspace lock {lock} is a directory", "mv ")
    code, _, err = run_cli("plan", cwd=project)  # plan takes no lock
    assert code == 0, err
