"""The apply tests that matter for a state store, on both stores (SQLite; PostgreSQL named by
$MADENGINE_STATE_URL): two applies at once from two processes, resume after SIGKILL, a plan beside a live
apply, and a no-op second apply. The store is read directly (`run_sql`), not through madengine."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from madengine.state.location import PgLocation, StateLocation
from tests.apply.test_local_apply import _start_apply, _wait_for, project
from tests.conftest import RunCli
from tests.infra.postgres import run_sql


def statuses(store: StateLocation) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    try:
        rows = run_sql(store, "SELECT address, status FROM attempts ORDER BY id")
    except Exception:  # not created yet
        return {}
    for address, status in rows:
        out.setdefault(str(address), []).append(str(status))
    return out


def running(store: StateLocation) -> bool:
    try:
        return bool(run_sql(store, "SELECT 1 FROM attempts WHERE status='RUNNING' AND handle IS NOT NULL"))
    except Exception:
        return False


def test_a_second_apply_from_another_process_stops_at_once_naming_the_first(
        run_cli: RunCli, tmp_path: Path, state_location: StateLocation) -> None:
    root = project(tmp_path, "- {name: a, scripts: run.sh, n_gpus: 0, env_vars: {SLEEP: '600'}}\n")
    first = _start_apply(root)
    try:
        _wait_for(lambda: running(state_location))
        code, out, err = run_cli("plan", cwd=root)  # a plan beside it says running, asked of the lock's holder
        [line] = [ln for ln in out.splitlines() if "job:a@" in ln]
        assert line.startswith(f"* running job:a@cpu/here#1 (apply pid {first.pid} on "), out + err
        code, _, err = run_cli("apply", "--yes", cwd=root)
        assert first.poll() is None, "the first apply ended: the second could not have met its lock"
        assert code == 1 and err.startswith(f"error: state is locked by pid {first.pid} on "), err
        assert "Traceback" not in err
    finally:
        os.kill(first.pid, signal.SIGINT)
        first.wait(timeout=60)
    assert first.returncode == 130
    assert statuses(state_location) == {"job:a@cpu/here#1": ["INTERRUPTED"]}
    code, out, _ = run_cli("plan", cwd=root)
    assert "+ run job:a@cpu/here#1 (interrupted)" in out


@pytest.mark.parametrize("kill_after", [1, 3])
def test_sigkill_then_a_second_apply_finishes_the_rest(tmp_path: Path, state_location: StateLocation,
                                                       kill_after: int, run_cli: RunCli) -> None:
    models = "".join(f"- {{name: m{i}, scripts: run.sh, n_gpus: 0, env_vars: {{SLEEP: '0.3'}}}}\n"
                     for i in range(5))
    root = project(tmp_path, models)

    def succeeded() -> int:
        return sum(s[-1] == "SUCCESS" for s in statuses(state_location).values())

    proc = _start_apply(root)
    _wait_for(lambda: succeeded() >= kill_after)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = {a for a, s in statuses(state_location).items() if s[-1] == "SUCCESS"}
    second = _start_apply(root)  # the killed apply's lock went with it (PostgreSQL: with its session)
    second.wait(timeout=60)
    assert second.returncode == 0, second.stderr.read() if second.stderr else ""
    final = statuses(state_location)
    assert all(final[a] == ["SUCCESS"] for a in done_before)  # nothing that succeeded ran again
    assert all(s[-1] == "SUCCESS" for s in final.values()) and len(final) == 5
    outcomes = [str(r[0]) for r in run_sql(state_location, "SELECT outcome FROM applies ORDER BY id")]
    assert outcomes == ["INTERRUPTED", "SUCCESS"]  # the killed one was closed by the next
    code, out, _ = run_cli("apply", "--yes", cwd=root)  # and a third does nothing
    assert code == 0 and "No changes" in out and statuses(state_location) == final


@pytest.mark.parametrize("sessions", ["all", "lock"])
def test_a_connection_lost_during_an_apply_is_one_line_and_the_next_apply_finishes(
        run_cli: RunCli, tmp_path: Path, pg_schema: PgLocation, monkeypatch: pytest.MonkeyPatch, sessions: str) -> None:
    """The server ends the apply's sessions (a restart, a network cut): the store's, or only the workspace
    lock's. The apply records nothing more (its next write fails: one line, exit 1), and the next apply
    runs what is missing."""
    monkeypatch.setenv("MADENGINE_STATE_URL", pg_schema.url)
    root = project(tmp_path, "- {name: a, scripts: run.sh, n_gpus: 0, env_vars: {SLEEP: '3'}}\n"
                             "- {name: b, scripts: run.sh, n_gpus: 0}\n")
    first = _start_apply(root, "--parallelism", "1")
    try:
        _wait_for(lambda: running(pg_schema))
        ours = f"SELECT pid FROM pg_stat_activity WHERE application_name = 'madengine/{first.pid}'"
        which = ours if sessions == "all" else (
            f"SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND pid IN ({ours})")
        ended = run_sql(pg_schema, f"SELECT pg_terminate_backend(pid) FROM ({which}) AS s")
        assert ended and all(r == (True,) for r in ended), ended
        first.wait(timeout=120)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
            first.wait()
    err = first.stderr.read() if first.stderr else ""
    assert first.returncode == 1 and "Traceback" not in err
    lost = ("lost the connection to the state database" if sessions == "all" else
            "lost the workspace lock of the state database")
    assert err.splitlines()[-1].startswith(f"error: {lost} {pg_schema.display}"), err
    assert statuses(pg_schema) == {"job:a@cpu/here#1": ["RUNNING"]}  # its result came after the loss: not recorded
    code, out, err = run_cli("apply", "--yes", cwd=root)
    assert code == 0, out + err
    assert statuses(pg_schema) == {"job:a@cpu/here#1": ["INTERRUPTED", "SUCCESS"], "job:b@cpu/here#1": ["SUCCESS"]}
