"""What `plan` says about jobs that are not simply done: failed ones, and ones an apply is running now."""

from __future__ import annotations

import signal
from pathlib import Path

from tests.apply.test_local_apply import _running, _start_apply, _wait_for, project
from tests.conftest import RunCli


def test_a_failed_job_is_planned_as_failed_with_the_hint(run_cli: RunCli, tmp_path: Path) -> None:
    root = project(tmp_path, "- {name: bad, scripts: run.sh, n_gpus: 0, env_vars: {FAIL: '1'}}\n")
    assert run_cli("apply", "--yes", cwd=root).code == 3
    code, out, _ = run_cli("plan", "--detailed-exitcode", cwd=root)
    assert code == 0, out  # apply leaves a failed job failed (terraform- and cargo-like) ...
    [line] = [ln for ln in out.splitlines() if "job:bad" in ln]
    assert line.startswith("! failed job:bad@cpu/here#1 (FAILURE ")
    assert ", exit 3: error pattern 'RuntimeError:' at line 1: RuntimeError: boom;" in line  # said once
    assert line.endswith("; rerun with --rerun-failed)")
    assert "up to date" not in out  # ... and says so, instead of "everything is up to date"
    assert out.splitlines()[-1] == "Plan: 0 to build, 0 to run, 0 unchanged, 1 failed."
    code, out, _ = run_cli("apply", "--yes", cwd=root)
    assert code == 0 and "! failed job:bad@cpu/here#1" in out
    assert "No changes to apply: 1 failed job(s) stay failed until rerun with --rerun-failed." in out


def test_plan_during_a_live_apply_says_running_not_interrupted(run_cli: RunCli, tmp_path: Path) -> None:
    root = project(tmp_path, "- {name: a, scripts: run.sh, n_gpus: 0, env_vars: {SLEEP: '60'}}\n")
    first = _start_apply(root)
    try:
        _wait_for(lambda: _running(root))
        code, out, err = run_cli("plan", cwd=root)
        assert code == 0, out + err
        [line] = [ln for ln in out.splitlines() if "job:a@" in ln]
        assert line.startswith(f"* running job:a@cpu/here#1 (apply pid {first.pid} on "), out
        assert "interrupted" not in out and out.splitlines()[-1].endswith(", 1 running.")
    finally:
        first.send_signal(signal.SIGINT)  # stopped: now it is an interrupted job, which runs again
        first.wait(timeout=30)
    code, out, _ = run_cli("plan", cwd=root)
    assert "+ run job:a@cpu/here#1 (interrupted)" in out
