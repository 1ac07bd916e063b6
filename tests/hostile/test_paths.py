"""Hostile paths: scripts outside the project, scripts that would replace a file of the run directory.
Each is a config error at validate (so at lock and plan too) with the line that named the file
(issue 7, §3 "The run directory is the model's")."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

from tests.conftest import RunCli, run_unprivileged

CONFIG = 5
OUTSIDE = "(hint: scripts must be files of the project (the madfile's directory) or of the MAD package; " \
          "symlinks and `..` are followed)"


def project(root: Path, madfile: str, files: dict[str, str] | None = None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "madfile.yaml").write_text(textwrap.dedent(madfile), encoding="utf-8")
    for rel, text in {"scripts/m/run.sh": 'echo "performance: 1 x"\n', **(files or {})}.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text, encoding="utf-8")
    return root


def errors(run_cli: RunCli, root: Path, command: str = "validate") -> list[str]:
    code, out, err = run_cli(command, cwd=root)
    assert (code, out) == (CONFIG, ""), (code, out, err)
    assert "Traceback" not in err and "internal error" not in err, err
    return err.splitlines()


MODEL = "version: 1\nmodels: [{name: m, scripts: scripts/m/run.sh, n_gpus: 0}]\n"


def test_pre_script_named_like_the_model_script(run_cli: RunCli, tmp_path: Path) -> None:
    root = project(tmp_path, MODEL + "contexts: {c: {pre_scripts: [scripts/other/run.sh]}}\n",
                   {"scripts/other/run.sh": "echo impostor\n"})
    for command in ("validate", "lock"):
        assert errors(run_cli, root, command) == [
            "madfile.yaml:3:30: error: contexts.c.pre_scripts[0]: script 'scripts/other/run.sh' would replace "
            "run.sh of the run directory, a copy of scripts/m/ (hint: rename the script: the run directory holds "
            "the model's directory and the pre/post scripts side by side)"]


def test_post_script_named_like_a_file_beside_the_model_script(run_cli: RunCli, tmp_path: Path) -> None:
    root = project(tmp_path, MODEL + "contexts: {c: {post_scripts: [{path: common/data.txt}]}}\n",
                   {"scripts/m/data.txt": "mine\n", "common/data.txt": "theirs\n"})
    assert errors(run_cli, root)[0].startswith("madfile.yaml:3:31: error: contexts.c.post_scripts[0]: script "
                                               "'common/data.txt' would replace data.txt of the run directory")


def test_pre_script_outside_the_project(run_cli: RunCli, tmp_path: Path) -> None:
    project(tmp_path, "", {"outside.sh": "echo outside\n"})
    root = project(tmp_path / "proj", MODEL + "contexts: {c: {pre_scripts: [../outside.sh]}}\n")
    for command in ("validate", "lock"):
        assert errors(run_cli, root, command) == [
            f"madfile.yaml:3:30: error: contexts.c.pre_scripts[0]: script '../outside.sh' is outside the project "
            f"and the package {OUTSIDE}"]
    assert not (root / "madengine.lock").exists()


def test_absolute_pre_script_outside_the_project(run_cli: RunCli, tmp_path: Path) -> None:
    project(tmp_path, "", {"outside.sh": "echo outside\n"})
    root = project(tmp_path / "proj", MODEL + f"contexts: {{c: {{pre_scripts: [{tmp_path}/outside.sh]}}}}\n")
    assert errors(run_cli, root) == [f"madfile.yaml:3:30: error: contexts.c.pre_scripts[0]: script "
                                     f"'../outside.sh' is outside the project and the package {OUTSIDE}"]


def test_absolute_pre_script_inside_the_project_is_locked_relative(run_cli: RunCli, tmp_path: Path) -> None:
    root = project(tmp_path, MODEL + f"contexts: {{c: {{pre_scripts: [{tmp_path}/pre.sh]}}}}\n", {"pre.sh": ""})
    assert run_cli("lock", cwd=root).code == 0
    lock = json.loads((root / "madengine.lock").read_text())
    assert lock["jobs"]["job:m@c/local#1"]["tools"]["pre_scripts"][0]["path"] == "pre.sh"
    assert str(tmp_path) not in (root / "madengine.lock").read_text()


def test_pre_script_symlinked_outside_the_project(run_cli: RunCli, tmp_path: Path) -> None:
    project(tmp_path, "", {"outside.sh": "echo outside\n"})
    root = project(tmp_path / "proj", MODEL + "contexts: {c: {pre_scripts: [link.sh]}}\n")
    (root / "link.sh").symlink_to(tmp_path / "outside.sh")
    assert errors(run_cli, root) == [f"madfile.yaml:3:30: error: contexts.c.pre_scripts[0]: script 'link.sh' "
                                     f"is outside the project and the package {OUTSIDE}"]


def test_model_script_outside_the_project(run_cli: RunCli, tmp_path: Path) -> None:
    project(tmp_path, "", {"outside.sh": "echo outside\n"})
    root = project(tmp_path / "proj", "version: 1\nmodels:\n  - name: m\n    scripts: ../outside.sh\n")
    assert errors(run_cli, root) == [f"madfile.yaml:4:5: error: models[0].scripts: model 'm': script "
                                     f"'../outside.sh' is outside the project and the package {OUTSIDE}"]


def test_packaged_model_script_symlinked_outside(run_cli: RunCli, tmp_path: Path) -> None:
    project(tmp_path, "", {"outside/run.sh": "echo outside\n"})
    root = project(tmp_path / "proj", "version: 1\npackage: MAD\nmodels: [{select: m}]\n",
                   {"MAD/models.json": '[\n {"name": "m", "scripts": "scripts/m/run.sh"}\n]\n'})
    (root / "MAD/scripts").mkdir(parents=True)
    (root / "MAD/scripts/m").symlink_to(tmp_path / "outside")
    assert errors(run_cli, root) == [f"models.json:2: error: [0].scripts: model 'm': script 'MAD/scripts/m/run.sh' "
                                     f"is outside the project and the package {OUTSIDE}"]


def test_tool_script_symlinked_outside_the_package(run_cli: RunCli, tmp_path: Path) -> None:
    project(tmp_path, "", {"outside.sh": "echo outside\n"})
    tools = {"tools": {"t": {"pre_scripts": [{"path": "scripts/common/pre.sh"}]}}}
    root = project(tmp_path / "proj", "version: 1\npackage: .\nmodels: [{select: m}]\n"
                                      "contexts: {c: {tools: [{name: t}]}}\n",
                   {"models.json": '[{"name": "m", "scripts": "scripts/m/run.sh"}]',
                    "scripts/common/tools.json": json.dumps(tools)})
    (root / "scripts/common/pre.sh").symlink_to(tmp_path / "outside.sh")
    assert errors(run_cli, root) == [f"madfile.yaml:4:16: error: contexts.c.tools: script 'scripts/common/pre.sh' "
                                     f"is outside the project and the package {OUTSIDE}"]


def test_a_script_that_cannot_be_read_is_refused_at_validate(tmp_path: Path) -> None:
    """validate said ok and lock then said the script 'does not exist'."""
    root = project(tmp_path, MODEL)
    (root / "scripts" / "m" / "run.sh").chmod(0)
    code, out, err = run_unprivileged(("validate",), root)
    assert (code, out) == (CONFIG, ""), err
    assert err == ("madfile.yaml:2:20: error: models[0].scripts: model 'm': script 'scripts/m/run.sh' cannot be "
                   "read (permission denied) (hint: check its permissions and owner (`ls -l scripts/m/run.sh`))\n")
