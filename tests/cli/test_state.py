"""`madengine state list|show|forget` and `madengine unlock` through the real entry point."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest

from madengine.state.location import PgLocation, StateLocation
from madengine.state.lock import WorkspaceLock
from madengine.state.model import ImageRecord, PerfRow, Status
from madengine.state.store import StateStore, state_path
from tests.conftest import RunCli
from tests.infra.postgres import location_arg
from tests.unit.state.children import hold_store_lock

JOB = "job:dummy@cpu/box#1"
FAILED = "job:matmul[size=256]@cpu/box#1"
IMAGE = "image:dummy.ubuntu.none@cpu"


@pytest.fixture
def project(tmp_path: Path, state_location: StateLocation) -> Path:
    """A workspace with recorded state: a built image, a job run twice, a failed job; in SQLite, or in
    PostgreSQL (named by $MADENGINE_STATE_URL for the test)."""
    with StateStore.open(state_location) as store:
        apply_id = store.begin_apply("sha256:lock")
        store.record_image(ImageRecord(address=IMAGE, target="box", node_hash="sha256:0123456789abcdef",
                                       tag="madengine/dummy.ubuntu.none:0123456789ab", image_id="sha256:feed",
                                       digest=None, inputs={}, built_at="2026-11-28T10:00:00Z"), apply_id)
        for value in (100.0, 123.5):
            attempt = store.start_attempt(apply_id, JOB, "sha256:aaaabbbbccccdddd", {"model": "dummy"}, "box1",
                                          "logs/dummy.log")
            store.finish_attempt(attempt, Status.SUCCESS, exit_code=0, perf=[PerfRow("dummy", value, "gflops")])
        attempt = store.start_attempt(apply_id, FAILED, "sha256:9999888877776666", {"model": "matmul"}, "box1",
                                      "logs/matmul.log")
        store.finish_attempt(attempt, Status.FAILURE, exit_code=2, message="no performance in the log")
        store.finish_apply(apply_id, "FAILURE")
    return tmp_path


def when(project: Path, address: str) -> str:
    with StateStore.open(state_path(project)) as store:
        a = store.latest_attempts()[address]
        return a.ended_at or a.started_at


# --- state list ----------------------------------------------------------------------------------


def named(location: StateLocation) -> str:
    """How the CLI names the store of `project`, run in it."""
    return location.display if isinstance(location, PgLocation) else ".madengine/state.db"


def test_list(run_cli: RunCli, project: Path, state_location: StateLocation) -> None:
    code, out, err = run_cli("state", "list", cwd=project)
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0].split() == ["ADDRESS", "STATUS", "WHEN", "HASH", "RESULT"]
    assert lines[1].split() == [IMAGE, "SUCCESS", "2026-11-28T10:00:00Z", "0123456789ab",
                                "madengine/dummy.ubuntu.none:0123456789ab", "on", "box"]
    assert lines[2].split() == [JOB, "SUCCESS", when(project, JOB), "aaaabbbbcccc", "123.5", "gflops"]
    assert lines[3].split(None, 4) == [FAILED, "FAILURE", when(project, FAILED), "999988887777",
                                       "no performance in the log"]
    assert lines[4] == f"3 addresses ({named(state_location)}, serial 8)"  # 1 apply + 1 image + 3 x 2 attempt writes
    assert len(lines) == 5


def test_list_json(run_cli: RunCli, project: Path) -> None:
    code, out, _ = run_cli("state", "list", "--json", cwd=project)
    assert code == 0
    data = json.loads(out)
    assert [e["address"] for e in data] == [IMAGE, JOB, FAILED]
    assert data[1] == {"address": JOB, "status": "SUCCESS", "when": when(project, JOB),
                       "node_hash": "sha256:aaaabbbbccccdddd", "result": "123.5 gflops", "attempt": 2, "targets": []}
    assert data[0]["targets"] == ["box"] and data[0]["attempt"] is None


def test_list_without_state_creates_nothing(run_cli: RunCli, tmp_path: Path) -> None:
    assert run_cli("state", "list", cwd=tmp_path) == (0, "0 addresses (.madengine/state.db does not exist yet)\n",
                                                      "")
    assert run_cli("state", "list", "--json", cwd=tmp_path) == (0, "[]\n", "")
    assert not (tmp_path / ".madengine").exists()


def test_list_with_chdir_state_option_and_env(run_cli: RunCli, project: Path, tmp_path: Path,
                                              state_location: StateLocation) -> None:
    code, out, _ = run_cli("state", "list", "-C", project, cwd=tmp_path.parent)
    assert code == 0 and "3 addresses" in out
    if isinstance(state_location, PgLocation):  # the URL by --state, and a path by --state over the URL's variable
        code, out, _ = run_cli("state", "list", "--state", state_location.url, cwd=tmp_path.parent,
                               env={"MADENGINE_STATE_URL": None})
        assert code == 0 and "3 addresses" in out and state_location.display in out
        code, out, _ = run_cli("state", "list", "--state", "other.db", cwd=project)
        assert (code, out) == (0, "0 addresses (other.db does not exist yet)\n")
        return
    moved = tmp_path / "elsewhere.db"
    (project / ".madengine" / "state.db").rename(moved)
    for suffix in ("-wal", "-shm"):
        Path(f"{project}/.madengine/state.db{suffix}").unlink(missing_ok=True)
    code, out, _ = run_cli("state", "list", "--state", moved, cwd=project)
    assert code == 0 and "3 addresses" in out
    code, out, _ = run_cli("state", "list", cwd=project, env={"MADENGINE_STATE": str(moved)})
    assert code == 0 and "3 addresses" in out


# --- state show ----------------------------------------------------------------------------------


def test_show(run_cli: RunCli, project: Path) -> None:
    code, out, err = run_cli("state", "show", JOB, cwd=project)
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == JOB
    assert lines[1].startswith("  #1  SUCCESS  20") and "apply 1  host box1  exit 0  hash aaaabbbbcccc" in lines[1]
    assert lines[2:4] == ["      log .madengine/logs/dummy.log", "      perf dummy: 100 gflops"]
    assert lines[4].startswith("  #2  SUCCESS")
    assert lines[5:] == ["      log .madengine/logs/dummy.log", "      perf dummy: 123.5 gflops"]


def test_show_failure_and_image(run_cli: RunCli, project: Path) -> None:
    code, out, _ = run_cli("state", "show", FAILED, cwd=project)
    assert code == 0
    assert "FAILURE" in out and "exit 2" in out and "      no performance in the log\n" in out
    code, out, _ = run_cli("state", "show", IMAGE, cwd=project)
    assert code == 0
    assert out.splitlines()[1] == ("  image on box: SUCCESS  2026-11-28T10:00:00Z  "
                                   "madengine/dummy.ubuntu.none:0123456789ab  hash 0123456789ab  id feed")


def test_show_json(run_cli: RunCli, project: Path) -> None:
    code, out, _ = run_cli("state", "show", JOB, "--json", cwd=project)
    assert code == 0
    data = json.loads(out)
    assert data["address"] == JOB and data["images"] == []
    first, second = data["attempts"]
    assert (first["status"], first["log_path"], first["host"], first["exit_code"]) == ("SUCCESS", "logs/dummy.log",
                                                                                      "box1", 0)
    assert second["perf"] == [{"model": "dummy", "performance": 123.5, "metric": "gflops", "status": "SUCCESS"}]
    assert second["inputs"] == {"model": "dummy"}


def test_show_unknown_address_suggests_close_ones(run_cli: RunCli, project: Path) -> None:
    code, out, err = run_cli("state", "show", "job:dummy@cpu/box#2", cwd=project)
    assert (code, out) == (4, "")
    assert err.startswith(f"error: no state recorded for job:dummy@cpu/box#2 (hint: did you mean {JOB}")
    code, _, err = run_cli("state", "show", "zzz", cwd=project)
    assert code == 4 and "`madengine state list` shows the recorded addresses" in err
    elsewhere = project / "elsewhere"
    elsewhere.mkdir()
    code, _, err = run_cli("state", "show", JOB, cwd=elsewhere, env={"MADENGINE_STATE_URL": None})  # no state there
    assert code == 4 and "no state recorded" in err


# --- state forget --------------------------------------------------------------------------------


def test_forget(run_cli: RunCli, project: Path, state_location: StateLocation) -> None:
    assert run_cli("state", "forget", JOB, cwd=project) == (0, f"forgot {JOB}: 2 attempts removed\n", "")
    code, _, _ = run_cli("state", "show", JOB, cwd=project)
    assert code == 4
    code, out, _ = run_cli("state", "list", cwd=project)
    assert JOB not in out and f"2 addresses ({named(state_location)}, serial 9)" in out
    assert run_cli("state", "forget", IMAGE, cwd=project) == (0, f"forgot {IMAGE}: 0 attempts, 1 image record "
                                                                 "removed\n", "")
    code, _, err = run_cli("state", "forget", JOB, cwd=project)
    assert code == 4 and "no state recorded" in err


def test_forget_waits_for_no_apply(run_cli: RunCli, project: Path, state_location: StateLocation) -> None:
    with hold_store_lock(location_arg(state_location)) as child:
        code, out, err = run_cli("state", "forget", JOB, cwd=project)
    assert (code, out) == (1, "")
    assert err.startswith(f"error: state is locked by pid {child.pid} on {socket.gethostname()} since ")
    code, _, _ = run_cli("state", "show", JOB, cwd=project)
    assert code == 0  # nothing was removed


# --- unlock --------------------------------------------------------------------------------------


def test_unlock_not_locked(run_cli: RunCli, tmp_path: Path, state_location: StateLocation) -> None:
    assert run_cli("unlock", cwd=tmp_path) == (0, "state is not locked\n", "")


def test_unlock_clears_a_dead_holder(run_cli: RunCli, tmp_path: Path, state_location: StateLocation) -> None:
    with hold_store_lock(location_arg(state_location)) as child:
        pid = child.pid
    if isinstance(state_location, PgLocation):  # the server ends the session of the killed holder
        lock = WorkspaceLock.for_store(state_location)
        deadline = time.monotonic() + 10
        while lock.is_held() and time.monotonic() < deadline:
            time.sleep(0.02)
    # killed: its record is left behind, but nothing holds the flock
    code, out, err = run_cli("unlock", cwd=tmp_path)
    assert (code, err) == (0, "")
    assert out.startswith(f"unlocked: removed the lock record of pid {pid} on {socket.gethostname()} since ")
    assert out.endswith("(madengine apply (test)), which is no longer running\n")
    assert run_cli("unlock", cwd=tmp_path) == (0, "state is not locked\n", "")


def test_unlock_refuses_a_live_holder_unless_forced(run_cli: RunCli, tmp_path: Path,
                                                   state_location: StateLocation) -> None:
    with hold_store_lock(location_arg(state_location)) as child:
        code, out, err = run_cli("unlock", cwd=tmp_path)
        assert (code, out) == (1, "")
        assert err.startswith(f"error: state is locked by pid {child.pid} on {socket.gethostname()} since ")
        assert "which is still running (hint: wait for it to finish; `madengine unlock --force`" in err

        code, out, err = run_cli("unlock", "--force", cwd=tmp_path)
        assert code == 0
        assert out.startswith(f"unlocked: removed the lock of pid {child.pid} on ")
        assert err == (f"warning: pid {child.pid} on {socket.gethostname()} is still running: it and the next "
                       "apply may now run at once (hint: stop it first if it is an apply)\n")
        assert run_cli("unlock", cwd=tmp_path) == (0, "state is not locked\n", "")


def test_help_lists_the_commands(run_cli: RunCli, tmp_path: Path) -> None:
    code, out, _ = run_cli("state", "--help", cwd=tmp_path)
    assert code == 0
    for name in ("list", "show", "forget"):
        assert f"  {name}" in out
    code, out, _ = run_cli("unlock", "--help", cwd=tmp_path)
    assert code == 0 and "--force" in out
