from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Protocol

import pytest

from madengine.compile.compiler import compile_project
from madengine.compile.ir import Project
from madengine.madfile.load import load_and_check


class MakeProject(Protocol):
    def __call__(self, madfile: str, files: dict[str, str] | None = None) -> Path: ...


def write_tree(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))


PACKAGE = {
    "pkg/models.json": """\
        [
          {"name": "dummy", "dockerfile": "docker/dummy", "scripts": "scripts/dummy/run.sh",
           "n_gpus": "1", "owner": "", "training_precision": "", "tags": ["dummies", "smoke"], "args": ""},
          {"name": "dummy2", "dockerfile": "docker/dummy", "scripts": "scripts/dummy/run.sh",
           "n_gpus": "-1", "owner": "", "training_precision": "", "tags": ["dummies"], "args": "--x 1"},
          {"name": "multi", "dockerfile": "docker/multi", "scripts": "scripts/dummy/run.sh",
           "n_gpus": "1", "owner": "", "training_precision": "", "tags": [], "args": ""}
        ]
        """,
    "pkg/docker/dummy.ubuntu.none.Dockerfile": "# CONTEXT {'gpu_vendor': 'NONE', 'guest_os': 'UBUNTU'}\n"
                                               "FROM scratch\n",
    "pkg/docker/dummy.ubuntu.amd.Dockerfile": "# CONTEXT {'gpu_vendor': 'AMD', 'guest_os': 'UBUNTU'}\n"
                                              "ARG BASE_DOCKER=rocm/pytorch:latest\nFROM $BASE_DOCKER\n",
    "pkg/docker/multi.a.Dockerfile": "FROM scratch\n",
    "pkg/docker/multi.b.Dockerfile": "FROM scratch\n",
    "pkg/scripts/dummy/run.sh": "echo 'performance: 1 x'\n",
}


@pytest.fixture
def make_project(tmp_path: Path) -> MakeProject:
    def make(madfile: str, files: dict[str, str] | None = None) -> Path:
        write_tree(tmp_path, {**PACKAGE, **(files or {}), "madfile.yaml": madfile})
        return tmp_path / "madfile.yaml"

    return make


def compile_file(path: Path) -> Project:
    return compile_project(load_and_check(path))
