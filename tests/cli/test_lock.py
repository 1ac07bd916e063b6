"""`madengine lock` through the real entry point: writing, `--check`, `-C`/`-f`, the fresh-lock fast path
(`madengine/lock/freshness.py`), corrupt files, determinism and missing inputs."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from tests.conftest import RunCli
from tests.unit.compile.conftest import PACKAGE, write_tree

STALE, USAGE, CONFIG = 1, 4, 5

# Two contexts, so that editing one Dockerfile changes one image and its jobs but not the other image.
MADFILE = """\
version: 1
name: cli-tests
package: pkg
models:
  - select: dummies
  - name: mm
    scripts: scripts/mm/run.sh
    n_gpus: 0
    tags: [micro]
contexts:
  cpu: {gpu_vendor: NONE, guest_os: UBUNTU}
  amd: {gpu_vendor: AMD, guest_os: UBUNTU}
targets:
  here: {backend: local}
  box: {backend: docker}
runs:
  - {models: [dummies], contexts: [cpu], targets: [box]}
  - {models: [dummy], contexts: [amd], targets: [box]}
  - {models: [mm], contexts: [cpu], targets: [here]}
"""

# The AMD image's base is pinned by digest in its reference, so that no lock here asks a registry.
AMD_DOCKERFILE = ("# CONTEXT {'gpu_vendor': 'AMD', 'guest_os': 'UBUNTU'}\n"
                  "ARG BASE_DOCKER=localhost:5000/rocm/pytorch@sha256:" + "ab" * 32 + "\nFROM $BASE_DOCKER\n")
FILES = {**PACKAGE, "pkg/docker/dummy.ubuntu.amd.Dockerfile": AMD_DOCKERFILE,
         "scripts/mm/run.sh": "echo 'performance: 1 gflops'\n", "madfile.yaml": MADFILE}
IMAGES = ["image:dummy.ubuntu.amd@amd", "image:dummy.ubuntu.none@cpu"]
JOBS = ["job:dummy2@cpu/box#1", "job:dummy@amd/box#1", "job:dummy@cpu/box#1", "job:mm@cpu/here#1"]
# What editing pkg/docker/dummy.ubuntu.none.Dockerfile changes: that image and exactly its two jobs.
CPU_IMAGE_CHANGED = "3 changed (image:dummy.ubuntu.none@cpu, job:dummy2@cpu/box#1, job:dummy@cpu/box#1)"
STALE_HINT = "(hint: run `madengine lock` and commit the result)"
RECORD = Path(".madengine/cache/lock-fingerprint.json")
PAST = 1_600_000_000  # an mtime well before any lock run: keeps the fast path's racy-clean rule out of the way


def age(root: Path, when: int = PAST) -> None:
    """Set every file and directory under root to an old mtime, so that `lock` records its fingerprint."""
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames]:
            os.utime(os.path.join(dirpath, name), (when, when), follow_symlinks=False)
    os.utime(root, (when, when))


def make_project(root: Path, files: dict[str, str] | None = None) -> Path:
    write_tree(root, files if files is not None else FILES)
    age(root)
    return root


def test_lock_writes_then_is_up_to_date(run_cli: RunCli, tmp_path: Path) -> None:
    make_project(tmp_path)
    assert run_cli("lock", cwd=tmp_path) == (0, "madengine.lock: written (2 images, 4 jobs)\n", "")
    text = (tmp_path / "madengine.lock").read_text(encoding="utf-8")
    lock = json.loads(text)
    # DESIGN §4: sorted keys, 2-space indent, one trailing newline, keyed by node address.
    assert text == json.dumps(lock, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    assert sorted(lock["images"]) == IMAGES and sorted(lock["jobs"]) == JOBS
    assert str(tmp_path) not in text
    assert run_cli("lock", cwd=tmp_path) == (0, "madengine.lock: up to date (2 images, 4 jobs)\n", "")


def test_lock_json(run_cli: RunCli, tmp_path: Path) -> None:
    make_project(tmp_path)
    code, out, err = run_cli("lock", "--json", cwd=tmp_path)
    assert (code, err) == (0, "")
    assert json.loads(out) == {"path": "madengine.lock", "stale": False, "written": True, "images": 2, "jobs": 4}
    code, out, err = run_cli("lock", "--check", "--json", cwd=tmp_path)
    assert (code, err) == (0, "")
    assert json.loads(out) == {"path": "madengine.lock", "stale": False, "written": False, "images": 2, "jobs": 4}


def test_check_fresh_then_stale_after_a_dockerfile_edit(run_cli: RunCli, tmp_path: Path) -> None:
    make_project(tmp_path)
    assert run_cli("lock", cwd=tmp_path).code == 0
    assert run_cli("lock", "--check", cwd=tmp_path) == (0, "madengine.lock: up to date (2 images, 4 jobs)\n", "")

    before = (tmp_path / "madengine.lock").read_bytes()
    with (tmp_path / "pkg/docker/dummy.ubuntu.none.Dockerfile").open("a") as f:
        f.write("LABEL edited=1\n")
    assert run_cli("lock", "--check", cwd=tmp_path) == (
        STALE, "", f"error: madengine.lock is stale: {CPU_IMAGE_CHANGED} {STALE_HINT}\n")

    code, out, err = run_cli("lock", "--check", "--json", cwd=tmp_path)
    assert code == STALE and err.startswith("error: madengine.lock is stale: ")
    assert json.loads(out) == {"path": "madengine.lock", "stale": True, "exists": True, "added": [], "removed": [],
                               "top_level": [], "changed": ["image:dummy.ubuntu.none@cpu", "job:dummy2@cpu/box#1",
                                                            "job:dummy@cpu/box#1"]}
    assert (tmp_path / "madengine.lock").read_bytes() == before  # --check never writes

    assert run_cli("lock", cwd=tmp_path) == (
        0, f"madengine.lock: updated (2 images, 4 jobs; {CPU_IMAGE_CHANGED})\n", "")


def test_check_without_a_lock(run_cli: RunCli, tmp_path: Path) -> None:
    make_project(tmp_path)
    assert run_cli("lock", "--check", cwd=tmp_path) == (
        STALE, "", "error: madengine.lock does not exist (hint: run `madengine lock` and commit the file)\n")
    code, out, _ = run_cli("lock", "--check", "--json", cwd=tmp_path)
    doc = json.loads(out)
    assert code == STALE and (doc["stale"], doc["exists"], doc["changed"]) == (True, False, [])
    assert sorted(doc["added"]) == IMAGES + JOBS
    assert not (tmp_path / "madengine.lock").exists()


def test_chdir_and_file_options(run_cli: RunCli, tmp_path: Path) -> None:
    make_project(tmp_path / "proj")
    assert run_cli("lock", "-C", "proj", cwd=tmp_path) == (0, "proj/madengine.lock: written (2 images, 4 jobs)\n", "")
    assert run_cli("lock", "--check", "-f", "proj/madfile.yaml", cwd=tmp_path) == (
        0, "proj/madengine.lock: up to date (2 images, 4 jobs)\n", "")
    # A madfile with another name: the lock is written next to it.
    (tmp_path / "proj/madfile.yaml").rename(tmp_path / "proj/bench.yaml")
    (tmp_path / "proj/madengine.lock").unlink()
    assert run_cli("lock", "-C", "proj", "-f", "bench.yaml", cwd=tmp_path) == (
        0, "proj/madengine.lock: written (2 images, 4 jobs)\n", "")


# --- the fast path (madengine/lock/freshness.py) --------------------------------------------------


def test_fast_path_is_taken_and_a_same_size_edit_defeats_it(run_cli: RunCli, tmp_path: Path) -> None:
    make_project(tmp_path)
    assert run_cli("lock", cwd=tmp_path).code == 0
    record = json.loads((tmp_path / RECORD).read_text(encoding="utf-8"))
    # Prove that `--check` answers from the record when nothing moved: it reports the recorded counts.
    (tmp_path / RECORD).write_text(json.dumps({**record, "images": 99}), encoding="utf-8")
    assert run_cli("lock", "--check", cwd=tmp_path) == (0, "madengine.lock: up to date (99 images, 4 jobs)\n", "")

    # One character replaced in place: same size, same inode; only the mtime tells (set explicitly).
    script = tmp_path / "scripts/mm/run.sh"
    data = script.read_bytes()
    with script.open("r+b") as f:
        f.write(data.replace(b"1 gflops", b"2 gflops"))
    assert script.stat().st_size == len(data)
    os.utime(script, (PAST + 60, PAST + 60))
    assert run_cli("lock", "--check", cwd=tmp_path) == (
        STALE, "", f"error: madengine.lock is stale: 1 changed (job:mm@cpu/here#1) {STALE_HINT}\n")


def test_missing_or_corrupt_record_is_recomputed(run_cli: RunCli, tmp_path: Path) -> None:
    make_project(tmp_path)
    assert run_cli("lock", cwd=tmp_path).code == 0
    (tmp_path / RECORD).write_text('{"inputs": [1, 2', encoding="utf-8")
    assert run_cli("lock", "--check", cwd=tmp_path) == (0, "madengine.lock: up to date (2 images, 4 jobs)\n", "")
    assert json.loads((tmp_path / RECORD).read_text(encoding="utf-8"))["jobs"] == 4  # rewritten

    shutil.rmtree(tmp_path / ".madengine")
    assert run_cli("lock", "--check", cwd=tmp_path) == (0, "madengine.lock: up to date (2 images, 4 jobs)\n", "")


def test_fast_path_watches_a_package_outside_the_project(run_cli: RunCli, tmp_path: Path) -> None:
    """A package named by an absolute path, or reached through a symlink, lies outside the project's
    directory scan: its files must still defeat the fast path."""
    write_tree(tmp_path / "MAD", {k.removeprefix("pkg/"): v for k, v in PACKAGE.items()})
    (tmp_path / "linked").mkdir()
    (tmp_path / "linked/MAD").symlink_to(tmp_path / "MAD", target_is_directory=True)
    write_tree(tmp_path / "linked", {"madfile.yaml": "version: 1\npackage: MAD\nmodels: [{select: dummy2}]\n"})
    write_tree(tmp_path / "absolute", {"madfile.yaml": f"version: 1\npackage: {tmp_path / 'MAD'}\n"
                                                       "models: [{select: dummy2}]\n"})
    age(tmp_path)
    for project in ("linked", "absolute"):
        assert run_cli("lock", "-C", project, cwd=tmp_path).code == 0
        assert (tmp_path / project / RECORD).exists()

    with (tmp_path / "MAD/scripts/dummy/run.sh").open("a") as f:
        f.write("echo edited\n")
    for project in ("linked", "absolute"):
        assert run_cli("lock", "--check", "-C", project, cwd=tmp_path) == (
            STALE, "", f"error: {project}/madengine.lock is stale: 1 changed (job:dummy2@default/local#1) "
                       f"{STALE_HINT}\n")


# --- bad inputs -----------------------------------------------------------------------------------


def test_corrupt_lock_is_a_config_error_with_its_position(run_cli: RunCli, tmp_path: Path) -> None:
    make_project(tmp_path)
    (tmp_path / "madengine.lock").write_text('{\n  "version": 1,\n  "images": {,\n}\n', encoding="utf-8")
    for args in (["lock", "--check"], ["lock"]):
        code, out, err = run_cli(*args, cwd=tmp_path)
        assert (code, out) == (CONFIG, ""), err
        # The location is the lock file's; it is shown as given or absolute (see the report to the lead).
        assert err.endswith("madengine.lock:3:14: error: madengine.lock is not valid JSON: Expecting property name "
                            "enclosed in double quotes (hint: delete it and run `madengine lock`)\n"), err
        assert len(err.splitlines()) == 1


def test_missing_script_names_the_node_and_path(run_cli: RunCli, tmp_path: Path) -> None:
    files = {k: v for k, v in FILES.items() if k != "scripts/mm/run.sh"}
    make_project(tmp_path, files)
    assert run_cli("lock", cwd=tmp_path) == (
        CONFIG, "", "madfile.yaml:7:5: error: models[1].scripts: model 'mm': script 'scripts/mm/run.sh' does not "
                    "exist (hint: paths are relative to the madfile (or, for packaged models, to the models.json "
                    "that declares them))\n")
    assert not (tmp_path / "madengine.lock").exists()


def test_same_project_anywhere_gives_the_same_bytes(run_cli: RunCli, tmp_path: Path) -> None:
    """Two copies, files created in opposite orders, locked from inside and via -C: identical locks."""
    write_tree(tmp_path / "a", FILES)
    write_tree(tmp_path / "elsewhere/b", dict(reversed(list(FILES.items()))))
    assert run_cli("lock", cwd=tmp_path / "a").code == 0
    assert run_cli("lock", "-C", "elsewhere/b", cwd=tmp_path).code == 0
    first = (tmp_path / "a/madengine.lock").read_bytes()
    assert first == (tmp_path / "elsewhere/b/madengine.lock").read_bytes()
    assert b'"path": "pkg"' in first and str(tmp_path).encode() not in first
