"""The lockfile: byte-for-byte determinism, Merkle propagation, staleness."""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path

from madengine.lock.lockfile import build_lock, diff_locks, image_tag, render
from tests.unit.compile.conftest import PACKAGE, compile_file, write_tree

MADFILE = """\
version: 1
package: pkg
models:
  - select: all
  - {name: local_one, scripts: pkg/scripts/dummy/run.sh, params: {n: [1, 2]}}
contexts:
  cpu: {gpu_vendor: NONE}
  amd: {gpu_vendor: AMD}
targets:
  box: {backend: docker}
  here: {backend: local}
runs:
  - {models: [dummies, multi], contexts: [cpu], targets: [box], repeat: 2}
  - {models: [dummy], contexts: [amd], targets: [box]}
  - {models: [local_one], targets: [here]}
"""


def _files() -> dict[str, str]:
    return {**PACKAGE, "madfile.yaml": MADFILE, "pkg/docker/.dockerignore": "*.log\n"}


def _lock_text(root: Path) -> str:
    return render(build_lock(compile_file(root / "madfile.yaml")))


def test_same_bytes_in_two_directories_written_in_different_orders(tmp_path: Path) -> None:
    files = _files()
    first, second = tmp_path / "a" / "deep" / "copy", tmp_path / "b"
    write_tree(first, files)
    shuffled = list(files.items())
    random.Random(7).shuffle(shuffled)
    for rel, text in reversed(shuffled):  # different creation order, so different directory order
        write_tree(second, {rel: text})
    os.utime(second / "pkg/models.json", (0, 0))
    os.chmod(second / "pkg/scripts/dummy/run.sh", 0o755)
    (second / "pkg/docker/noise.log").write_text("ignored by .dockerignore")
    text = _lock_text(first)
    assert text == _lock_text(second)
    assert str(tmp_path) not in text and "/tmp" not in text
    assert text.endswith("}\n") and not text.endswith("\n\n")
    data = json.loads(text)
    assert list(data) == sorted(data)


def test_a_changed_dockerfile_changes_exactly_its_image_and_jobs(tmp_path: Path) -> None:
    write_tree(tmp_path, _files())
    before = build_lock(compile_file(tmp_path / "madfile.yaml"))
    (tmp_path / "pkg/docker/dummy.ubuntu.amd.Dockerfile").write_text(
        "# CONTEXT {'gpu_vendor': 'AMD', 'guest_os': 'UBUNTU'}\nFROM scratch\nLABEL changed=1\n")
    after = build_lock(compile_file(tmp_path / "madfile.yaml"))
    diff = diff_locks(before, after)
    assert diff.changed == ("image:dummy.ubuntu.amd@amd", "job:dummy@amd/box#1")
    assert not diff.added and not diff.removed


def test_a_changed_script_reruns_only_its_jobs(tmp_path: Path) -> None:
    write_tree(tmp_path, _files())
    write_tree(tmp_path, {"other.sh": "echo 1\n", "madfile.yaml": MADFILE.replace(
        "scripts: pkg/scripts/dummy/run.sh", "scripts: other.sh")})
    before = build_lock(compile_file(tmp_path / "madfile.yaml"))
    (tmp_path / "other.sh").write_text("echo 2\n")
    diff = diff_locks(before, build_lock(compile_file(tmp_path / "madfile.yaml")))
    assert diff.changed == tuple(f"job:local_one[n={n}]@{c}/here#1" for n in (1, 2) for c in ("amd", "cpu"))


def test_images_are_content_addressed_across_contexts(tmp_path: Path) -> None:
    write_tree(tmp_path, _files())
    write_tree(tmp_path, {"madfile.yaml": """\
        version: 1
        package: pkg
        models: [{select: dummy}]
        contexts: {a: {gpu_vendor: NONE}, b: {gpu_vendor: NONE, guest_os: UBUNTU}}
        targets: {box: {backend: docker}}
        """})
    lock = build_lock(compile_file(tmp_path / "madfile.yaml"))
    a, b = lock["images"]["image:dummy.ubuntu.none@a"], lock["images"]["image:dummy.ubuntu.none@b"]
    assert a["hash"] == b["hash"] and a["tag"] == b["tag"]
    job_a, job_b = lock["jobs"]["job:dummy@a/box#1"], lock["jobs"]["job:dummy@b/box#1"]
    assert job_a["hash"] != job_b["hash"]  # the context is part of what a run means


def test_image_tag_is_a_valid_repository_name() -> None:
    assert image_tag("Pyt_Wan2.1+x", "sha256:" + "ab" * 32) == "madengine/pyt_wan2.1-x:abababababab"


def test_moving_the_project_keeps_the_lock(tmp_path: Path) -> None:
    write_tree(tmp_path / "one", _files())
    text = _lock_text(tmp_path / "one")
    shutil.move(tmp_path / "one", tmp_path / "two")
    assert _lock_text(tmp_path / "two") == text
