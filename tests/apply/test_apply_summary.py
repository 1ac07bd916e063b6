"""The apply summary accounts for every node of the plan, including the ones apply never started."""

from __future__ import annotations

from pathlib import Path

from tests.apply.test_local_apply import project, statuses
from tests.conftest import RunCli


def test_the_summary_names_the_jobs_never_started_after_a_failure(run_cli: RunCli, tmp_path: Path) -> None:
    root = project(tmp_path, """\
        - {name: a_bad, scripts: run.sh, n_gpus: 0, env_vars: {FAIL: "1"}}
        - {name: b_good, scripts: run.sh, n_gpus: 0}
        - {name: c_good, scripts: run.sh, n_gpus: 0}
        """)
    code, out, err = run_cli("apply", "--yes", cwd=root)
    assert code == 3, out + err
    assert statuses(root) == {"job:a_bad@cpu/here#1": ["FAILURE"]}  # the others never started ...
    lines = out.splitlines()
    start = lines.index("Not started (apply stopped at the first failure; --keep-going runs them):")
    assert lines[start + 1:start + 3] == ["  job:b_good@cpu/here#1", "  job:c_good@cpu/here#1"]  # ... and are named
    assert lines[-1] == "Apply failure: 1 FAILURE, 2 NOT STARTED"
    code, out, _ = run_cli("apply", "--yes", cwd=root)  # the rest runs now (the failed one stays failed)
    assert code == 0 and "Not started" not in out and "! failed job:a_bad@cpu/here#1" in out
