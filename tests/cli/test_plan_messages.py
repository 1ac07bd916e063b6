"""What plan, apply and run say about what they did to the user's inputs, in the user's own terms."""

from __future__ import annotations

from pathlib import Path

from tests.apply.test_local_apply import project
from tests.cli.test_run_local import package
from tests.conftest import RunCli

MODELS = "- {name: a, scripts: run.sh, n_gpus: 0}\n"


def test_run_says_why_it_runs_again_without_naming_an_option_not_given(run_cli: RunCli, tmp_path: Path) -> None:
    root = package(tmp_path)
    code, out, err = run_cli("run", "--tags", "dummy_dir/quick", "--backend", "local", cwd=root)
    assert code == 0, out + err
    assert "(never run)" in out and "--replace" not in out
    code, out, err = run_cli("run", "--tags", "dummy_dir/quick", "--backend", "local", cwd=root)
    assert code == 0, out + err
    assert "--replace" not in out
    assert "(run runs every selected model again; --resume keeps recorded results)" in out


def test_plan_and_apply_say_when_they_rewrite_the_lock(run_cli: RunCli, tmp_path: Path) -> None:
    root = project(tmp_path, MODELS)
    code, out, err = run_cli("plan", cwd=root)
    assert code == 0 and err == "madengine.lock written (0 images, 1 jobs)\n", err
    code, out, err = run_cli("plan", cwd=root)
    assert code == 0 and err == ""  # nothing rewritten, nothing said
    (root / "madfile.yaml").write_text((root / "madfile.yaml").read_text().replace("n_gpus: 0", "n_gpus: 0, args: -x"))
    code, out, err = run_cli("apply", "--yes", cwd=root)
    assert code == 0, out + err
    assert err == "madengine.lock updated: 1 changed (job:a@cpu/here#1)\n"
    assert "madengine.lock" not in out  # stdout stays the plan's


def test_a_saved_plan_on_a_stale_lock_does_not_hint_an_option_not_given(run_cli: RunCli, tmp_path: Path) -> None:
    root = project(tmp_path, MODELS)
    assert run_cli("plan", "-o", "plan.json", cwd=root).code == 0
    (root / "run.sh").write_text((root / "run.sh").read_text() + "# changed\n")
    code, out, err = run_cli("apply", "plan.json", "--yes", cwd=root)
    assert code == 1, out + err
    assert "madengine.lock is stale: 1 changed (job:a@cpu/here#1); the saved plan plan.json was made before that" \
        in err
    assert "--locked" not in err and "madengine plan -o plan.json" in err
    code, out, err = run_cli("apply", "plan.json", "--yes", "--locked", cwd=root)
    assert code == 1 and "drop --locked" in err  # given: then it is the way out
