"""A full disk and a read-only workspace, for real: a small tmpfs filled to the brim, and a tmpfs
remounted read-only. Each is one line naming the path and what to do, never "internal error"; what
was recorded before stays; commands that only read work on a read-only workspace.

Mounting needs root (CAP_SYS_ADMIN), which dev/test has (it starts dockerd). A test that cannot mount
fails, as a missing service does; `MADENGINE_SKIP_SERVICES=1` skips instead, outside CI.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import RunCli
from tests.infra.services import unavailable

SCRIPT = "#!/usr/bin/env bash\necho \"performance: ${PERF:-42.5} samples_per_second\"\n"
MADFILE = """\
version: 1
models:
  - {name: a, scripts: run.sh, n_gpus: 0, params: {size: [1, 2, 3]}}
contexts: {cpu: {gpu_vendor: NONE}}
targets: {here: {backend: local}}
"""
JOB = "job:a[size=1]@cpu/here#1"


def _mount(*args: str | Path) -> None:
    done = subprocess.run(["mount", *map(str, args)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        unavailable(f"cannot mount ({done.stderr.strip()}): these tests need root, as dev/test has")


@contextmanager
def tmpfs(where: Path, size: str) -> Iterator[Path]:
    where.mkdir()
    _mount("-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", where)
    try:
        yield where
    finally:
        if subprocess.run(["umount", str(where)], capture_output=True, check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(where)], capture_output=True, check=False)  # a straggler holds it


def applied(root: Path, run_cli: RunCli) -> None:
    (root / "run.sh").write_text(SCRIPT)
    (root / "madfile.yaml").write_text(MADFILE)
    code, out, err = run_cli("apply", "--yes", cwd=root)
    assert code == 0, out + err


def attempts(root: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(root / ".madengine" / "state.db") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        return conn.execute("SELECT address, status FROM attempts ORDER BY id").fetchall()


def fill(root: Path, leave_kb: int) -> Path:
    """A file that takes all the free space of the file system but `leave_kb`."""
    st = os.statvfs(root)
    path = root / "filler"
    with path.open("wb") as f:
        left = st.f_bavail * st.f_frsize - leave_kb * 1024
        while left > 0:
            try:
                left -= f.write(b"\0" * min(left, 1 << 20))
            except OSError:
                break
    return path


def assert_one_clean_line(err: str, *words: str) -> None:
    assert "internal error" not in err and "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 1, err
    for w in words:
        assert w in err, err


@pytest.mark.parametrize("leave_kb", [0, 16, 48])
def test_a_full_disk_is_named_and_what_was_recorded_stays(run_cli: RunCli, tmp_path: Path, leave_kb: int) -> None:
    with tmpfs(tmp_path / "disk", "4m") as root:
        applied(root, run_cli)
        before = attempts(root)
        (root / "run.sh").write_text(SCRIPT.replace("42.5", "43.5"))  # every job is to run again
        assert run_cli("lock", cwd=root).code == 0
        filler = fill(root, leave_kb)
        code, out, err = run_cli("apply", "--yes", cwd=root)
        assert code == 1, out + err
        assert_one_clean_line(err, "no space left on the device of", str(root / ".madengine"),
                              "free some space", "what was recorded is kept")
        assert attempts(root)[:len(before)] == before  # nothing recorded was lost or changed
        filler.unlink()
        code, out, err = run_cli("apply", "--yes", cwd=root)
        assert code == 0, out + err
        assert {s for a, s in attempts(root)[len(before):] if s != "INTERRUPTED"} == {"SUCCESS"}


@pytest.mark.parametrize("shm", ["kept", "gone"])
def test_a_read_only_workspace_reads_and_names_what_it_cannot_write(run_cli: RunCli, tmp_path: Path,
                                                                    shm: str) -> None:
    with tmpfs(tmp_path / "ro", "8m") as root:
        applied(root, run_cli)
        if shm == "kept":  # as a killed process leaves them: the WAL and its shared memory beside the store
            subprocess.run([sys.executable, "-c", "import os, sqlite3; c = sqlite3.connect('.madengine/state.db'); "
                            "c.execute('SELECT count(*) FROM attempts').fetchall(); os._exit(0)"], cwd=root, check=True)
        assert (root / ".madengine" / "state.db-shm").exists() == (shm == "kept")
        _mount("-o", "remount,ro", root)
        try:
            for args in (("plan", "--detailed-exitcode"), ("results",), ("results", "--json"), ("state", "list"),
                         ("state", "show", JOB), ("graph",), ("validate",), ("lock", "--check")):
                code, out, err = run_cli(*args, cwd=root)
                assert (code, err) == (0, ""), f"{args}: {out}{err}"
            code, out, _ = run_cli("plan", cwd=root)
            assert "3 unchanged" in out
            assert JOB in run_cli("results", cwd=root).stdout
            for args in (("apply", "--yes"), ("unlock",), ("state", "forget", JOB)):
                code, out, err = run_cli(*args, cwd=root)
                assert code == 1, f"{args}: {out}{err}"
                # the workspace lock, or the store (`state forget` reads it first): named either way
                assert_one_clean_line(err, f"cannot write {root / '.madengine' / 'state.'}", "read-only file system",
                                      "--state")
        finally:
            _mount("-o", "remount,rw", root)
        assert attempts(root) == [(JOB.replace("size=1", f"size={i}"), "SUCCESS") for i in (1, 2, 3)]


def test_a_stale_lock_on_a_read_only_workspace_names_the_lock(run_cli: RunCli, tmp_path: Path) -> None:
    with tmpfs(tmp_path / "ro", "8m") as root:
        applied(root, run_cli)
        (root / "run.sh").write_text(SCRIPT.replace("42.5", "43.5"))
        _mount("-o", "remount,ro", root)
        try:
            code, out, err = run_cli("plan", cwd=root)  # the lock must be refreshed, and cannot be
        finally:
            _mount("-o", "remount,rw", root)
        assert code == 1, out + err
        assert_one_clean_line(err, f"cannot write {root / 'madengine.lock'}: read-only file system")


def test_discover_reads_a_package_on_a_read_only_file_system(run_cli: RunCli, tmp_path: Path) -> None:
    import shutil

    from tests.conftest import REPO_ROOT

    with tmpfs(tmp_path / "ro", "8m") as root:
        shutil.copytree(REPO_ROOT / "examples" / "mad-package", root, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns(".madengine", "__pycache__"))
        _mount("-o", "remount,ro", root)
        try:
            code, out, err = run_cli("discover", "--tags", "dynamic", cwd=root)  # runs get_models_json.py
            json_code, json_out, json_err = run_cli("discover", "--json", cwd=root)
        finally:
            _mount("-o", "remount,rw", root)
        assert (code, err) == (0, ""), out + err
        assert "dyn/large" in out
        assert (json_code, json_err) == (0, "") and json_out.lstrip().startswith("[")
