"""The state store's API, its durability across SIGKILL, and the speed of `latest_attempts`."""

from __future__ import annotations

import os
import socket
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from madengine.errors import StateError
from madengine.state.location import StateLocation
from madengine.state.model import ImageRecord, Observed, PerfRow, Status
from madengine.state.store import StateStore, state_path
from tests.infra.postgres import location_arg
from tests.unit.state.children import Child, count_rows

JOB = "job:dummy@cpu/here#1"
JOB2 = "job:matmul[size=256]@cpu/box#1"
IMAGE = "image:dummy.ubuntu.none@cpu"
INPUTS = {"model": "dummy", "args": ["--iters", "50"], "script": {"path": "scripts/dummy/run.sh", "sha256": "ab"}}


def image(target: str = "box", node_hash: str = "sha256:i1", status: Status = Status.SUCCESS,
          address: str = IMAGE) -> ImageRecord:
    return ImageRecord(address=address, target=target, node_hash=node_hash, tag=f"madengine/dummy:{node_hash[7:]}",
                       image_id="sha256:eng", digest=None, inputs={"dockerfile": {"sha256": node_hash}},
                       built_at="2026-11-28T10:15:00Z", status=status)


# --- where the state lives ---------------------------------------------------------------------


def test_state_path_default_override_and_env(tmp_path: Path) -> None:
    root = tmp_path / "proj"
    assert state_path(root, None, environ={}) == root / ".madengine" / "state.db"
    assert state_path(root, "elsewhere/s.db", environ={}) == root / "elsewhere" / "s.db"
    assert state_path(root, str(tmp_path / "abs.db"), environ={}) == tmp_path / "abs.db"
    env = {"MADENGINE_STATE": str(tmp_path / "env.db")}
    assert state_path(root, None, environ=env) == tmp_path / "env.db"
    assert state_path(root, "cli.db", environ=env) == root / "cli.db"  # the command line wins
    assert state_path(root, None, environ={"MADENGINE_STATE": ""}) == root / ".madengine" / "state.db"


def test_open_creates_the_directory(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "state.db"
    with StateStore.open(path) as store:
        assert store.path == path
    assert path.exists()


# --- applies and the serial --------------------------------------------------------------------


def test_applies_and_serial(store: StateStore) -> None:
    assert store.serial() == 0
    assert store.applies() == []
    first = store.begin_apply("sha256:lock1")
    assert store.serial() == 1
    second = store.begin_apply("sha256:lock2")
    assert second > first and store.serial() == 2
    store.finish_apply(first, "SUCCESS")
    a1, a2 = store.applies()
    # a finished apply's serial is the one it left the state at; a running one's, the one it started
    assert (a1.id, a1.lock_hash, a1.serial, a1.outcome, a1.host) == (first, "sha256:lock1", 2, "SUCCESS",
                                                                    socket.gethostname())
    assert a1.ended_at is not None and a1.started_at <= a1.ended_at
    assert (a2.serial, a2.outcome, a2.ended_at) == (2, None, None)
    with pytest.raises(StateError, match="no apply 999"):
        store.finish_apply(999, "SUCCESS")


def test_close_abandoned_applies(store: StateStore) -> None:
    dead = store.begin_apply("h")
    done = store.begin_apply("h")
    store.finish_apply(done, "SUCCESS")
    assert store.close_abandoned_applies() == [dead]
    assert [a.outcome for a in store.applies()] == ["INTERRUPTED", "SUCCESS"]
    assert store.close_abandoned_applies() == []


# --- images ------------------------------------------------------------------------------------


def test_images_latest_success_per_address_and_target(store: StateStore) -> None:
    apply_id = store.begin_apply("h")
    store.record_image(image("box", "sha256:i1"), apply_id)
    store.record_image(image("box", "sha256:i2"), apply_id)
    store.record_image(image("box", "sha256:i3", Status.FAILURE), apply_id)  # a failure hides no success
    store.record_image(image("lab", "sha256:i1"), apply_id)
    got = store.images()
    assert set(got) == {(IMAGE, "box"), (IMAGE, "lab")}
    assert got[(IMAGE, "box")] == image("box", "sha256:i2")  # the full record comes back, inputs included
    assert got[(IMAGE, "lab")].node_hash == "sha256:i1"
    assert [r.node_hash for r in store.image_records(IMAGE)] == ["sha256:i1", "sha256:i2", "sha256:i3", "sha256:i1"]
    assert store.forget_image(IMAGE, "box") == 3
    assert set(store.images()) == {(IMAGE, "lab")}
    assert store.forget_image(IMAGE, "box") == 0


# --- attempts ----------------------------------------------------------------------------------


def test_attempt_lifecycle(store: StateStore) -> None:
    apply_id = store.begin_apply("h")
    attempt_id = store.start_attempt(apply_id, JOB, "sha256:j1", INPUTS, "box1", "logs/dummy.log")
    (running,) = store.running_attempts()
    assert (running.id, running.status, running.ended_at, running.handle) == (attempt_id, Status.RUNNING, None, None)
    assert running.inputs == INPUTS and running.host == "box1" and running.log_path == "logs/dummy.log"
    store.set_attempt_handle(attempt_id, "4242")
    assert store.running_attempts()[0].handle == "4242"
    store.set_attempt_handle(attempt_id, "0123abcdef")  # a container id: any text
    assert store.running_attempts()[0].handle == "0123abcdef"
    perf = [PerfRow("dummy", 123.5, "gflops"), PerfRow("dummy_b", None, "ms", Status.FAILURE)]
    store.finish_attempt(attempt_id, Status.SUCCESS, exit_code=0, perf=perf, image_digest="sha256:d")
    assert store.running_attempts() == []
    (done,) = store.attempts(JOB)
    assert (done.status, done.exit_code, done.image_digest, done.message) == (Status.SUCCESS, 0, "sha256:d", "")
    assert done.perf == tuple(perf)
    assert done.ended_at is not None and done.duration is not None and done.duration >= 0
    with pytest.raises(ValueError, match="final status"):
        store.finish_attempt(attempt_id, Status.RUNNING)
    with pytest.raises(StateError, match="no attempt 999"):
        store.finish_attempt(999, Status.SUCCESS)
    with pytest.raises(StateError, match="no attempt 999"):
        store.set_attempt_handle(999, "1")


def test_finishing_again_replaces_perf_rows(store: StateStore) -> None:
    apply_id = store.begin_apply("h")
    attempt_id = store.start_attempt(apply_id, JOB, "sha256:j1", INPUTS, None, None, handle="7",
                                     facts={"os": "Ubuntu 22.04"})
    store.finish_attempt(attempt_id, Status.SUCCESS, perf=[PerfRow("dummy", 1.0, "x")])
    store.finish_attempt(attempt_id, Status.FAILURE, exit_code=3, message="Traceback in log",
                         perf=[PerfRow("dummy", None, "x", Status.FAILURE)])
    (a,) = store.attempts()
    assert (a.status, a.exit_code, a.message, a.handle) == (Status.FAILURE, 3, "Traceback in log", "7")
    assert a.facts == {"os": "Ubuntu 22.04"} and store.latest_attempts()[JOB].facts == a.facts
    assert a.perf == (PerfRow("dummy", None, "x", Status.FAILURE),)


def test_attempt_filters(store: StateStore) -> None:
    first = store.begin_apply("h")
    a = store.start_attempt(first, JOB, "sha256:j1", INPUTS, None, None)
    b = store.start_attempt(first, JOB2, "sha256:j2", {"model": "matmul"}, None, None)
    second = store.begin_apply("h")
    c = store.start_attempt(second, JOB, "sha256:j1", INPUTS, None, None)
    d = store.start_attempt(second, "job:multi@cpu/here#1", "sha256:j3", {"model": "multi"}, None, None)
    store.finish_attempt(d, Status.SUCCESS, perf=[PerfRow("multi_a", 1.0, "x"), PerfRow("multi_b", 2.0, "x")])
    assert [x.id for x in store.attempts()] == [a, b, c, d]
    assert [x.id for x in store.attempts(address=JOB)] == [a, c]
    assert [x.id for x in store.attempts(apply_id=first)] == [a, b]
    assert [x.id for x in store.attempts(address=JOB, apply_id=second)] == [c]
    assert [x.id for x in store.attempts(model="dummy")] == [a, c]
    assert [x.id for x in store.attempts(model="multi")] == [d]  # the job's model
    assert [x.id for x in store.attempts(model="multi_b")] == [d]  # a multiple_results row's model
    assert store.attempts(address="job:nothing") == []


def test_latest_attempts(store: StateStore) -> None:
    apply_id = store.begin_apply("h")
    old = store.start_attempt(apply_id, JOB, "sha256:old", INPUTS, None, None)
    store.finish_attempt(old, Status.FAILURE, exit_code=1)
    new = store.start_attempt(apply_id, JOB, "sha256:new", INPUTS, None, None)
    store.finish_attempt(new, Status.SUCCESS, perf=[PerfRow("dummy", 5.0, "gflops"), PerfRow("d2", 6.0, "s")])
    running = store.start_attempt(apply_id, JOB2, "sha256:j2", {}, None, None)
    latest = store.latest_attempts()
    assert set(latest) == {JOB, JOB2}
    assert (latest[JOB].id, latest[JOB].node_hash, latest[JOB].inputs) == (new, "sha256:new", INPUTS)
    assert latest[JOB].perf == (PerfRow("dummy", 5.0, "gflops"), PerfRow("d2", 6.0, "s"))
    assert (latest[JOB2].id, latest[JOB2].status, latest[JOB2].perf) == (running, Status.RUNNING, ())
    assert latest[JOB] == store.attempts(JOB)[-1]  # same record as the general query gives


def test_mark_interrupted_touches_only_running_attempts(store: StateStore) -> None:
    apply_id = store.begin_apply("h")
    running = [store.start_attempt(apply_id, f"job:m{i}@cpu/here#1", "sha256:x", {}, None, None) for i in range(3)]
    store.finish_attempt(running[0], Status.SUCCESS)
    assert store.mark_interrupted(running, "apply was killed") == 2
    assert store.mark_interrupted([], "nothing") == 0
    statuses = [(a.status, a.message) for a in store.attempts()]
    assert statuses == [(Status.SUCCESS, ""), (Status.INTERRUPTED, "apply was killed"),
                        (Status.INTERRUPTED, "apply was killed")]
    assert all(a.ended_at for a in store.attempts())
    assert store.running_attempts() == []


def aged(db: Path) -> None:
    """Old mtimes on the store's files: their stat can be trusted (not "racy")."""
    for name in db.parent.glob(db.name + "*"):
        os.utime(name, (1_700_000_000, 1_700_000_000))


@pytest.fixture
def page_checks(db: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[bool], int]:
    """`page_checks(readonly)`: open the store (one attempt recorded) and close it; how many times its
    pages were checked (`PRAGMA quick_check`, seen in a trace of the statements SQLite runs)."""
    with StateStore.open(db) as s:
        s.finish_attempt(s.start_attempt(s.begin_apply("h"), JOB, "sha256:x", INPUTS, None, None), Status.SUCCESS)
    statements: list[str] = []
    connect = sqlite3.connect

    def traced(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        conn: sqlite3.Connection = connect(*args, **kwargs)
        conn.set_trace_callback(statements.append)
        return conn

    monkeypatch.setattr(sqlite3, "connect", traced)

    def checks(readonly: bool) -> int:
        statements.clear()
        StateStore.open(db, readonly=readonly).close()
        return sum("quick_check" in s for s in statements)

    return checks


@pytest.mark.sqlite_only
def test_readers_trust_a_checked_store_whose_files_have_not_moved_and_writers_never_do(
        db: Path, page_checks: Callable[[bool], int]) -> None:
    """The page check reads the whole store, so readers skip it while the store's files' stat has not moved
    since it passed; a writer (apply) builds on what it reads and checks every time it opens."""
    aged(db)
    assert page_checks(True) == 1
    aged(db)  # the first reader left an empty -wal (a read-only connection cannot remove it), new then
    assert page_checks(True) == 1  # checked, and remembered
    assert page_checks(True) == 0  # unchanged since: trusted
    assert page_checks(False) == 1  # a writer checks all the same


@pytest.mark.sqlite_only
def test_the_checked_stamp_is_a_cache_and_a_torn_one_means_one_more_check(
        db: Path, page_checks: Callable[[bool], int]) -> None:
    aged(db)
    page_checks(True)
    aged(db)
    before = sorted(p.name for p in db.parent.iterdir())
    assert page_checks(True) == 1
    record = db.parent / "cache" / "state.db.checked"
    assert record.is_file()
    # Readers leave the store's directory as it was: nothing beside the store, no temporary file anywhere.
    assert sorted(p.name for p in db.parent.iterdir()) == sorted([*before, "cache"])
    assert [p.name for p in record.parent.iterdir()] == ["state.db.checked"]
    stamp = record.read_text()
    assert page_checks(True) == 0
    for torn in (stamp[:len(stamp) // 2], ""):  # a reader killed mid-write
        record.write_text(torn)
        assert page_checks(True) == 1
        assert record.read_text() == stamp


def test_set_gates_replaces_verdicts_in_one_transaction_without_moving_the_serial(store: StateStore) -> None:
    apply_id = store.begin_apply("h")
    ids = [store.start_attempt(apply_id, f"job:m{i}@cpu/here#1", "sha256:x", {}, None, None) for i in range(2)]
    for i in ids:
        store.finish_attempt(i, Status.SUCCESS, gate={"met": False})
    serial = store.serial()
    store.set_gates({ids[0]: {"met": True, "value": 9.0}})
    assert [a.gate for a in store.attempts()] == [{"met": True, "value": 9.0}, {"met": False}]
    with pytest.raises(StateError, match="no attempt 999"):  # one bad id: none of the verdicts is written
        store.set_gates({ids[1]: {"met": True}, 999: {"met": True}})
    assert [a.gate for a in store.attempts()] == [{"met": True, "value": 9.0}, {"met": False}]
    assert store.serial() == serial  # a planner never reads a verdict: a saved plan stays current


def test_every_observable_write_moves_the_serial(store: StateStore) -> None:
    serials = [store.serial()]
    apply_id = store.begin_apply("h")
    serials.append(store.serial())
    store.record_image(image(), apply_id)
    serials.append(store.serial())
    attempt = store.start_attempt(apply_id, JOB, "sha256:j1", INPUTS, None, None)
    serials.append(store.serial())
    store.set_attempt_handle(attempt, "5")  # not something a planner reads
    assert store.serial() == serials[-1]
    store.finish_attempt(attempt, Status.SUCCESS)
    serials.append(store.serial())
    other = store.start_attempt(apply_id, JOB2, "sha256:j2", {}, None, None)
    serials.append(store.serial())
    store.mark_interrupted([other], "stopped")
    serials.append(store.serial())
    assert store.mark_interrupted([other], "again") == 0  # nothing changed: the serial stays
    store.forget_image(IMAGE, "box")
    serials.append(store.serial())
    store.finish_apply(apply_id, "SUCCESS")
    assert serials == list(range(8)) and store.serial() == 7
    assert store.applies()[0].serial == 7


def test_forget(store: StateStore, db: StateLocation) -> None:
    apply_id = store.begin_apply("h")
    for _ in range(2):
        attempt = store.start_attempt(apply_id, JOB, "sha256:j1", INPUTS, None, None)
        store.finish_attempt(attempt, Status.SUCCESS, perf=[PerfRow("dummy", 1.0, "x")])
    other = store.start_attempt(apply_id, JOB2, "sha256:j2", {}, None, None)
    store.record_image(image(), apply_id)
    assert store.addresses() == [IMAGE, JOB, JOB2]
    serial = store.serial()
    assert store.forget(JOB) == 2
    assert store.serial() == serial + 1
    assert store.attempts(JOB) == [] and [a.id for a in store.attempts()] == [other]
    assert count_rows(db, "perf") == 0  # perf rows go with their attempts
    assert store.forget(IMAGE) == 1 and store.images() == {}
    assert store.forget("job:unknown") == 0
    assert store.serial() == serial + 2  # forgetting nothing moves nothing
    # ids are never reused: "latest" stays max(id) after a forget
    again = store.start_attempt(apply_id, JOB, "sha256:j1", INPUTS, None, None)
    assert again > other


def test_observed_and_integrity(store: StateStore) -> None:
    apply_id = store.begin_apply("h")
    store.record_image(image(), apply_id)
    attempt = store.start_attempt(apply_id, JOB, "sha256:j1", INPUTS, None, None)
    store.finish_attempt(attempt, Status.SUCCESS)
    observed = store.observed()
    assert observed == Observed(serial=store.serial(), images=store.placements(), latest=store.latest_attempts())
    assert observed.serial == 4
    assert store.integrity_check() == "ok"


def test_calls_from_several_threads_are_serialized(store: StateStore) -> None:
    apply_id = store.begin_apply("h")
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(25):
                attempt = store.start_attempt(apply_id, f"job:t{n}-{i}@cpu/here#1", "sha256:x", {}, None, None)
                store.finish_attempt(attempt, Status.SUCCESS, perf=[PerfRow("t", float(i), "x")])
                store.latest_attempts()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(store.latest_attempts()) == 100
    assert all(a.status is Status.SUCCESS and len(a.perf) == 1 for a in store.attempts())


def test_a_second_store_on_the_same_file_sees_each_commit(db: StateLocation) -> None:
    with StateStore.open(db) as writer, StateStore.open(db) as reader:
        apply_id = writer.begin_apply("h")
        attempt = writer.start_attempt(apply_id, JOB, "sha256:j1", INPUTS, None, None)
        assert reader.latest_attempts()[JOB].status is Status.RUNNING
        writer.finish_attempt(attempt, Status.SUCCESS)
        assert reader.latest_attempts()[JOB].status is Status.SUCCESS
        assert reader.serial() == writer.serial() == 3


# --- durability: a SIGKILLed writer ------------------------------------------------------------

RECORD_THEN_SLEEP = """
    import sys, time
    from pathlib import Path
    from madengine.state.model import PerfRow, Status
    from madengine.state.store import StateStore, state_path

    store = StateStore.open(state_path(Path.cwd(), sys.argv[1], environ={}))
    apply_id = store.begin_apply("sha256:lock")
    attempt = store.start_attempt(apply_id, "job:dummy@cpu/here#1", "sha256:j1", {"model": "dummy"}, "h", "l.log")
    store.finish_attempt(attempt, Status.SUCCESS, exit_code=0, perf=[PerfRow("dummy", 42.0, "gflops")])
    print(attempt, flush=True)
    time.sleep(600)  # killed here: the connection is never closed, the WAL never checkpointed
"""

WRITE_FOREVER = """
    import sys
    from pathlib import Path
    from madengine.state.model import PerfRow, Status
    from madengine.state.store import StateStore, state_path

    store = StateStore.open(state_path(Path.cwd(), sys.argv[1], environ={}))
    apply_id = store.begin_apply("sha256:lock")
    i = 0
    while True:
        attempt = store.start_attempt(apply_id, f"job:m{i % 50}@cpu/here#1", "sha256:x", {"i": i}, "h", None)
        store.finish_attempt(attempt, Status.SUCCESS, exit_code=0, perf=[PerfRow("m", float(i), "x")] * 3)
        print(attempt, flush=True)
        i += 1
"""


def test_a_finished_attempt_survives_sigkill(db: StateLocation) -> None:
    with Child(RECORD_THEN_SLEEP, location_arg(db)) as child:
        attempt_id = int(child.line())
        child.sigkill()
    if isinstance(db, Path):
        assert Path(f"{db}-wal").exists()  # the commit is in the WAL, not yet checkpointed into the file
    with StateStore.open(db) as store:
        (a,) = store.attempts()
        assert (a.id, a.status, a.exit_code, a.perf) == (attempt_id, Status.SUCCESS, 0,
                                                         (PerfRow("dummy", 42.0, "gflops"),))
        assert store.serial() == 3  # begin, start, finish
        assert store.integrity_check() == "ok"


def test_sigkill_in_the_middle_of_writing_loses_no_acknowledged_attempt(db: StateLocation) -> None:
    with Child(WRITE_FOREVER, location_arg(db)) as child:
        acknowledged = [int(child.line()) for _ in range(60)]
        child.sigkill()  # somewhere inside the next transaction, most likely
    with StateStore.open(db) as store:
        assert store.integrity_check() == "ok"
        recorded = {a.id: a for a in store.attempts()}
        for attempt_id in acknowledged:
            assert recorded[attempt_id].status is Status.SUCCESS
            assert len(recorded[attempt_id].perf) == 3
        # a transaction cut short leaves at most one RUNNING attempt, never a half-written one
        assert len(store.running_attempts()) <= 1
        assert all(len(a.perf) in (0, 3) for a in recorded.values())


# --- speed -------------------------------------------------------------------------------------


def test_latest_attempts_over_2000_addresses(db: StateLocation) -> None:
    addresses, repeats = 2000, 3
    with StateStore.open(db) as store:
        apply_id = store.begin_apply("h")
        setup = time.perf_counter()
        for r in range(repeats):
            for i in range(addresses):
                inputs = {"model": f"m{i}", "args": ["--size", str(r)], "script": {"path": "scripts/m/run.sh"}}
                attempt = store.start_attempt(apply_id, f"job:m{i}@cpu/here#1", f"sha256:{r}", inputs, "h", None)
                store.finish_attempt(attempt, Status.SUCCESS, perf=[PerfRow(f"m{i}", float(r), "gflops")])
        setup = time.perf_counter() - setup
        store.latest_attempts()  # warm the page cache, as the planner's process would have
        timings = []
        for _ in range(5):
            start = time.perf_counter()
            latest = store.latest_attempts()
            timings.append(time.perf_counter() - start)
    assert len(latest) == addresses
    for i in (0, 1234, addresses - 1):
        a = latest[f"job:m{i}@cpu/here#1"]
        assert (a.node_hash, a.inputs["args"], a.perf[0].performance) == (f"sha256:{repeats - 1}",
                                                                          ["--size", str(repeats - 1)], 2.0)
    print(f"\nlatest_attempts over {addresses} addresses x {repeats} attempts: best {min(timings) * 1000:.1f} ms, "
          f"median {sorted(timings)[2] * 1000:.1f} ms; recording them (2 commits each) took {setup:.2f} s")
