"""Hostile baseline names and files: a name never reaches outside `baselines/`, a file there that is not
a baseline is refused in one line naming it, and nothing is written or removed that was not asked for."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from madengine.errors import UsageError
from madengine.results import baseline
from tests.apply.test_gates import project
from tests.conftest import RunCli

USAGE, CONFIG = 4, 5


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A project, and a file beside it that a bad name could reach."""
    (tmp_path / "p").mkdir()
    (tmp_path / "x.json").write_text("precious\n")
    return project(tmp_path / "p", "{metric: mflops}")


@pytest.mark.parametrize("name", ["../x", "../../x", "a/b", "/tmp/x", "..", ".hidden", "x..y", "main.json",
                                  "-", "a b", "ü", "a\\b", "x" * 65, "x" * 10_000])
@pytest.mark.parametrize("command", ["save", "show", "rm"])
def test_a_name_that_is_not_a_plain_file_name_is_refused(run_cli: RunCli, root: Path, name: str,
                                                         command: str) -> None:
    code, out, err = run_cli("baseline", command, "--", name, cwd=root)
    assert (code, out, len(err.splitlines())) == (USAGE, "", 1), err
    assert err.startswith("error: ") and "a baseline name is letters, digits" in err and len(err) < 400, err
    assert not (root / "baselines").exists()
    assert (root.parent / "x.json").read_text() == "precious\n"


def test_a_nul_in_a_name_is_refused(root: Path) -> None:
    for name in ("main\0", "ma\0in", "\0"):  # argv cannot carry a NUL; a madfile can (below)
        with pytest.raises(UsageError):
            baseline.path_of(root, name)


def test_a_nul_in_the_madfiles_baseline_is_a_config_error(run_cli: RunCli, root: Path) -> None:
    (root / "madfile.yaml").write_text((root / "madfile.yaml").read_text().replace(
        "{metric: mflops}", '{metric: mflops, tolerance: 5%, baseline: "ma\\0in"}'))
    code, out, err = run_cli("validate", cwd=root)
    assert (code, out) == (CONFIG, "") and "runs[0].expect.bench.baseline" in err and "NUL" in err, err


def test_a_symlink_out_of_the_project_is_read_as_a_baseline_and_refused(run_cli: RunCli, root: Path) -> None:
    (root / "baselines").mkdir()
    os.symlink(root.parent / "x.json", root / "baselines" / "main.json")
    assert run_cli("apply", "--yes", cwd=root).code == 0
    code, out, err = run_cli("baseline", "show", "main", cwd=root)
    assert (code, out, len(err.splitlines())) == (CONFIG, "", 1) and err.startswith("baselines/main.json:1:1: error: ")
    assert run_cli("baseline", "save", "main", cwd=root).code == CONFIG  # never written through the link
    assert (root.parent / "x.json").read_text() == "precious\n"


def test_a_directory_a_fifo_and_a_huge_file_in_place_of_a_baseline(run_cli: RunCli, root: Path) -> None:
    (root / "baselines" / "dir.json").mkdir(parents=True)
    os.mkfifo(root / "baselines" / "fifo.json")
    (root / "baselines" / "big.json").write_bytes(b"[" + b"1," * 20_000_000 + b"1]")
    for name in ("dir", "fifo"):
        code, out, err = run_cli("baseline", "show", name, cwd=root, timeout=30)
        assert (code, out) == (CONFIG, "") and err.startswith(f"baselines/{name}.json: error: "), err
    code, out, err = run_cli("baseline", "show", "big", cwd=root, timeout=30)
    assert (code, out, len(err.splitlines())) == (CONFIG, "", 1) and "baselines/big.json" in err, err


def test_deeply_nested_json_is_refused_not_a_crash(run_cli: RunCli, root: Path) -> None:
    (root / "baselines").mkdir()
    (root / "baselines" / "main.json").write_text("[" * 100_000 + "]" * 100_000)
    code, out, err = run_cli("baseline", "list", cwd=root)
    assert (code, out, len(err.splitlines())) == (CONFIG, "", 1) and "Traceback" not in err, err
