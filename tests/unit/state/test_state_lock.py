"""The workspace lock: real flocks (and, for a PostgreSQL store, real advisory locks), real processes, real
SIGKILL. The tests of `state_dir` are of the file lock itself; those of `db` run on both stores."""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

import pytest

from madengine.errors import ExitCode, StateLockedError
from madengine.state.location import StateLocation
from madengine.state.lock import WorkspaceLock
from madengine.state.model import Holder
from tests.infra.postgres import location_arg
from tests.unit.state.children import hold_lock, hold_store_lock


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / ".madengine"


def test_acquire_records_the_holder_and_release_clears_it(state_dir: Path) -> None:
    lock = WorkspaceLock(state_dir)
    assert lock.path == state_dir / "state.lock"
    assert (lock.holder(), lock.is_held()) == (None, False)  # no file yet
    with lock.acquire("madengine apply") as held:
        assert held.previous is None
        assert held.holder.pid == os.getpid() and held.holder.host == socket.gethostname()
        assert held.holder.command == "madengine apply"
        assert lock.holder() == held.holder
        assert json.loads(lock.path.read_text())["pid"] == os.getpid()
        assert lock.is_held()
    assert not held.held
    assert (lock.holder(), lock.is_held()) == (None, False)
    assert lock.path.exists()  # never unlinked on release: another process may have it open
    held.release()  # releasing twice is harmless


def test_a_second_acquire_fails_at_once_naming_the_holder(state_dir: Path) -> None:
    with WorkspaceLock(state_dir).acquire("madengine apply") as held:
        start = time.monotonic()
        with pytest.raises(StateLockedError) as info:
            WorkspaceLock(state_dir).acquire("madengine apply")
        assert time.monotonic() - start < 1
    assert info.value.exit_code is ExitCode.FAILURE
    (d,) = info.value.diagnostics
    assert d.message == f"state is locked by {held.holder.describe()}"
    assert d.message.startswith(f"state is locked by pid {os.getpid()} on {socket.gethostname()} since 20")
    assert "madengine unlock" in d.hint


def test_for_store_names_the_lock_after_the_database(tmp_path: Path) -> None:
    assert WorkspaceLock.for_store(tmp_path / ".madengine" / "state.db").path == tmp_path / ".madengine" / "state.lock"
    assert WorkspaceLock.for_store(tmp_path / "ci.db").path == tmp_path / "ci.lock"


def test_two_processes_and_a_sigkilled_holder(state_dir: Path) -> None:
    with hold_lock(str(state_dir)) as child:
        lock = WorkspaceLock(state_dir)
        assert lock.is_held()
        start = time.monotonic()
        with pytest.raises(StateLockedError) as info:
            lock.acquire("madengine apply")
        assert time.monotonic() - start < 1  # at once, not after a wait
        message = str(info.value)
        assert f"state is locked by pid {child.pid} on {socket.gethostname()} since " in message
        assert "(madengine apply (test))" in message
        child.sigkill()
        # The kernel dropped the flock with the process; its record is still in the file.
        assert not lock.is_held()
        dead = lock.holder()
        assert dead is not None and dead.pid == child.pid
        with lock.acquire("madengine apply") as held:
            assert held.previous == dead
            assert lock.holder() == held.holder


def test_an_unreadable_record_still_fails_at_once(state_dir: Path) -> None:
    lock = WorkspaceLock(state_dir)
    with lock.acquire() as held:
        lock.path.write_text("garbage")
        with pytest.raises(StateLockedError, match="locked by another process"):
            WorkspaceLock(state_dir).acquire()
        assert lock.holder() is None
        assert held.held


def test_unlock_when_not_locked(state_dir: Path) -> None:
    lock = WorkspaceLock(state_dir)
    assert lock.unlock().outcome == "free"  # no file at all
    lock.acquire().release()
    assert lock.unlock().outcome == "free"  # a file without a record


def test_unlock_clears_a_dead_holders_record(state_dir: Path) -> None:
    state_dir.mkdir()
    dead = Holder(pid=999_999, host="elsewhere", since="2026-11-28T10:15:00Z", command="madengine apply")
    (state_dir / "state.lock").write_text(json.dumps(dead.__dict__))
    lock = WorkspaceLock(state_dir)
    assert lock.holder() == dead and not lock.is_held()
    done = lock.unlock()
    assert (done.outcome, done.holder) == ("stale", dead)
    assert lock.holder() is None


def test_unlock_refuses_a_live_holder_without_force(state_dir: Path) -> None:
    with hold_lock(str(state_dir)) as child:
        lock = WorkspaceLock(state_dir)
        with pytest.raises(StateLockedError) as info:
            lock.unlock()
        assert f"pid {child.pid}" in str(info.value) and "still running" in str(info.value)
        assert "--force" in info.value.diagnostics[0].hint
        assert lock.is_held()  # refusing changed nothing
        holder = lock.holder()
        assert holder is not None and holder.pid == child.pid

        done = lock.unlock(force=True)
        assert done.outcome == "forced" and done.holder == holder
        assert not lock.path.exists()
        # The lock is free again for newcomers, even though the old holder still runs.
        with lock.acquire("madengine apply") as held:
            assert held.previous is None
            assert lock.is_held()


# --- the lock of any store (SQLite: the file lock; PostgreSQL: an advisory lock) ---------------------


def test_a_stores_lock_names_its_holder_to_a_second_process_and_frees_with_a_sigkilled_one(
        db: StateLocation) -> None:
    lock = WorkspaceLock.for_store(db)
    assert (lock.holder(), lock.is_held(), lock.live_holder()) == (None, False, None)
    with hold_store_lock(location_arg(db)) as child:
        assert lock.is_held()
        live = lock.live_holder()
        assert live is not None and live.pid == child.pid
        start = time.monotonic()
        with pytest.raises(StateLockedError) as info:
            lock.acquire("madengine apply")
        assert time.monotonic() - start < 2  # at once, not after a wait
        message = str(info.value)
        assert f"state is locked by pid {child.pid} on {socket.gethostname()} since " in message
        assert "(madengine apply (test))" in message
        child.sigkill()
        # The holder's lock went with its process (PostgreSQL: its session); its record is still there.
        deadline = time.monotonic() + 10
        while lock.is_held() and time.monotonic() < deadline:  # the server notices the closed socket
            time.sleep(0.02)
        assert not lock.is_held() and lock.live_holder() is None
        dead = lock.holder()
        assert dead is not None and dead.pid == child.pid
        with lock.acquire("madengine apply") as held:
            assert held.previous == dead
            assert lock.holder() == held.holder and lock.is_held()
    assert (lock.holder(), lock.is_held()) == (None, False)  # a clean release leaves no record


def test_a_stores_lock_unlock_stale_live_and_forced(db: StateLocation) -> None:
    lock = WorkspaceLock.for_store(db)
    assert lock.unlock().outcome == "free"
    lock.acquire().release()
    assert lock.unlock().outcome == "free"  # released cleanly: no record
    with hold_store_lock(location_arg(db)) as child:
        with pytest.raises(StateLockedError) as info:
            lock.unlock()
        assert f"pid {child.pid}" in str(info.value) and "still running" in str(info.value)
        assert "--force" in info.value.diagnostics[0].hint
        assert lock.is_held()  # refusing changed nothing
        holder = lock.holder()
        assert holder is not None and holder.pid == child.pid
        done = lock.unlock(force=True)
        assert done.outcome == "forced" and done.holder == holder
        # The lock is free again for newcomers, even though the old holder still runs.
        with lock.acquire("madengine apply") as held:
            assert held.previous is None
            assert lock.is_held()
    with hold_store_lock(location_arg(db)) as child:
        child.sigkill()
        deadline = time.monotonic() + 10
        while lock.is_held() and time.monotonic() < deadline:
            time.sleep(0.02)
        done = lock.unlock()
        assert done.outcome == "stale" and done.holder is not None and done.holder.pid == child.pid
        assert lock.holder() is None
