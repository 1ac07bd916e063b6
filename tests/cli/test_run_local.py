"""`madengine run --tags` in a MAD package without a madfile (on the local backend; Docker has its own)."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

from tests.conftest import REPO_ROOT, RunCli


def package(tmp_path: Path) -> Path:
    root = tmp_path / "MAD"
    shutil.copytree(REPO_ROOT / "examples" / "mad-package", root,
                    ignore=shutil.ignore_patterns("madfile.yaml", "madengine.lock", ".madengine"))
    return root


def test_run_runs_the_tags_and_appends_perf_csv(run_cli: RunCli, tmp_path: Path) -> None:
    root = package(tmp_path)
    code, out, err = run_cli("run", "--tags", "dummy_perf:batch_size=8,dummy_dir/quick", "--backend", "local",
                             cwd=root)
    assert code == 0, out + err
    rows = list(csv.DictReader((root / "perf.csv").open()))
    assert {(r["model"], r["performance"], r["status"]) for r in rows} == {
        ("dummy_perf", "32.5", "SUCCESS"), ("dummy_dir/quick", "200", "SUCCESS")}
    assert not (root / "madengine.lock").exists() and not (root / "madengine-run.yaml").exists()
    code, out, _ = run_cli("run", "--tags", "dummy_dir/quick", "--backend", "local", cwd=root)
    assert code == 0 and len(list(csv.DictReader((root / "perf.csv").open()))) == 3  # ROCm runs again
    code, out, _ = run_cli("run", "--tags", "dummy_dir/quick", "--backend", "local", "--resume", cwd=root)
    assert code == 0 and "No changes: everything is up to date." in out


def test_unknown_tag_and_bad_context(run_cli: RunCli, tmp_path: Path) -> None:
    root = package(tmp_path)
    code, _, err = run_cli("run", "--tags", "dumy", "--backend", "local", cwd=root)
    assert code == 5 and "dumy" in err and "dummy" in err and "Traceback" not in err
    code, _, err = run_cli("run", "--tags", "dummy", "--additional-context", "{bad", cwd=root)
    assert code == 4 and "--additional-context" in err


def test_a_failing_model_exits_3_and_is_in_perf_csv(run_cli: RunCli, tmp_path: Path) -> None:
    root = package(tmp_path)
    (root / "scripts" / "dummy" / "run.sh").write_text("echo 'RuntimeError: no GPU'\nexit 1\n")
    code, _, _ = run_cli("run", "--tags", "dummy,dummy_dir/quick", "--backend", "local", cwd=root)
    assert code == 3
    rows = {r["model"]: r["status"] for r in csv.DictReader((root / "perf.csv").open())}
    assert rows == {"dummy": "FAILURE", "dummy_dir/quick": "SUCCESS"}
