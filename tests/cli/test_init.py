"""`madengine init` through the real entry point: the starter madfile validates and locks; no overwrite
without --force; --from-package selects from a real package."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from tests.conftest import REPO_ROOT, RunCli

USAGE, CONFIG = 4, 5
NEXT = "; next: `madengine validate`, then `madengine lock`\n"
IGNORED = " (and added .madengine/ to .gitignore)"


def copy_example_package(dest: Path) -> Path:
    shutil.copytree(REPO_ROOT / "examples" / "mad-package", dest,
                    ignore=shutil.ignore_patterns("madengine.lock", "madfile.yaml", ".madengine", "__pycache__"))
    return dest


def test_starter_validates_and_locks(run_cli: RunCli, tmp_path: Path) -> None:
    assert run_cli("init", cwd=tmp_path) == (0, "wrote madfile.yaml" + IGNORED + NEXT, "")
    text = (tmp_path / "madfile.yaml").read_text(encoding="utf-8")
    assert text.startswith("# madengine madfile, version 1") and f"\nname: {tmp_path.name}\n" in text
    assert (tmp_path / "scripts/hello/run.sh").read_text(encoding="utf-8").endswith(
        'echo "performance: 1.0 hellos_per_second"\n')
    assert run_cli("validate", cwd=tmp_path) == (
        0, "madfile.yaml: ok (1 model entries, 1 contexts, 1 targets -> 0 images, 1 jobs)\n", "")
    assert run_cli("lock", cwd=tmp_path) == (0, "madengine.lock: written (0 images, 1 jobs)\n", "")


def test_suggests_only_installed_backends(run_cli: RunCli, tmp_path: Path) -> None:
    assert run_cli("init", cwd=tmp_path)[0] == 0
    text = (tmp_path / "madfile.yaml").read_text(encoding="utf-8")
    suggested = re.findall(r"^  # (\w+: \{backend: .*)$", text, flags=re.MULTILINE)
    assert suggested, text
    # Every commented-out target, uncommented, validates.
    targets = "".join(f"  {line}\n" for line in suggested)
    (tmp_path / "madfile.yaml").write_text(f"version: 1\ntargets:\n{targets}", encoding="utf-8")
    code, out, err = run_cli("validate", cwd=tmp_path)
    assert (code, err) == (0, ""), err
    assert f"1 contexts, {len(suggested)} targets" in out


def test_the_workspace_is_ignored_by_git(run_cli: RunCli, tmp_path: Path) -> None:
    assert run_cli("init", cwd=tmp_path).code == 0
    assert (tmp_path / ".gitignore").read_text(encoding="utf-8") == ".madengine/\n"
    # An existing .gitignore is appended to (its last line ended or not), never replaced, and once only.
    (tmp_path / ".gitignore").write_text("*.pyc\nbuild/", encoding="utf-8")
    assert run_cli("init", "--force", cwd=tmp_path) == (0, "wrote madfile.yaml" + IGNORED + NEXT, "")
    assert (tmp_path / ".gitignore").read_text(encoding="utf-8") == "*.pyc\nbuild/\n.madengine/\n"
    (tmp_path / ".gitignore").write_text("/.madengine\n", encoding="utf-8")
    assert run_cli("init", "--force", cwd=tmp_path) == (0, "wrote madfile.yaml" + NEXT, "")
    assert (tmp_path / ".gitignore").read_text(encoding="utf-8") == "/.madengine\n"


def test_refuses_to_overwrite_without_force(run_cli: RunCli, tmp_path: Path) -> None:
    (tmp_path / "madfile.yaml").write_text("version: 1\nname: mine\n", encoding="utf-8")
    assert run_cli("init", cwd=tmp_path) == (
        USAGE, "", "error: madfile.yaml already exists (hint: pass --force to overwrite it)\n")
    assert (tmp_path / "madfile.yaml").read_text(encoding="utf-8") == "version: 1\nname: mine\n"
    assert run_cli("init", "--force", cwd=tmp_path) == (0, "wrote madfile.yaml" + IGNORED + NEXT, "")
    assert "name: mine" not in (tmp_path / "madfile.yaml").read_text(encoding="utf-8")


def test_directory_name_that_yaml_reads_as_a_number(run_cli: RunCli, tmp_path: Path) -> None:
    """`name:` comes from the directory name: `2024` must be written as a string, or validate fails."""
    (tmp_path / "2024").mkdir()
    assert run_cli("init", "-C", "2024", cwd=tmp_path) == (0, "wrote 2024/madfile.yaml" + IGNORED + NEXT, "")
    assert '\nname: "2024"\n' in (tmp_path / "2024/madfile.yaml").read_text(encoding="utf-8")
    assert run_cli("validate", "-C", "2024", cwd=tmp_path).code == 0


def test_from_package(run_cli: RunCli, tmp_path: Path) -> None:
    copy_example_package(tmp_path / "mad")
    assert run_cli("init", "--from-package", "mad", "-f", "bench/madfile.yaml", cwd=tmp_path) == (
        0, "wrote bench/madfile.yaml" + IGNORED + NEXT, "")
    text = (tmp_path / "bench/madfile.yaml").read_text(encoding="utf-8")
    assert "\npackage: ../mad\n" in text and "\n  - select: dummy\n" in text
    assert "This package has 7 models; its most common tags: dummies, dir_group, dynamic" in text
    assert not (tmp_path / "bench/scripts").exists()  # no hello script: the package has the models
    assert run_cli("validate", "-C", "bench", cwd=tmp_path) == (
        0, "bench/madfile.yaml: ok (1 model entries, 1 contexts, 1 targets -> 0 images, 1 jobs)\n", "")
    code, out, err = run_cli("graph", "--json", "-C", "bench", cwd=tmp_path)
    assert (code, err) == (0, "") and '"job:dummy@cpu/here#1"' in out


def test_from_package_is_relative_to_chdir(run_cli: RunCli, tmp_path: Path) -> None:
    """Like -f, --from-package is read relative to -C DIR ("as if started in DIR")."""
    copy_example_package(tmp_path / "mad")
    (tmp_path / "proj").mkdir()
    assert run_cli("init", "-C", "proj", "--from-package", "../mad", cwd=tmp_path) == (
        0, "wrote proj/madfile.yaml" + IGNORED + NEXT, "")
    assert "\npackage: ../mad\n" in (tmp_path / "proj/madfile.yaml").read_text(encoding="utf-8")
    assert run_cli("validate", "-C", "proj", cwd=tmp_path).code == 0


def test_from_a_missing_package_writes_nothing(run_cli: RunCli, tmp_path: Path) -> None:
    code, out, err = run_cli("init", "--from-package", "nowhere", cwd=tmp_path)
    assert (code, out) == (CONFIG, "")
    assert err.startswith("error: MAD package directory ") and "nowhere" in err and "does not exist" in err
    assert not (tmp_path / "madfile.yaml").exists()
