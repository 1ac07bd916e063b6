"""Dockerfile prefixes, `# CONTEXT` headers and matching, and base images."""

from __future__ import annotations

from pathlib import Path

import pytest

from madengine.errors import ConfigError
from madengine.mad.dockerfiles import (
    DockerfileIndex,
    base_image,
    find_dockerfiles,
    read_context,
    select_dockerfiles,
)
from madengine.mad.model import Dockerfile
from tests.unit.mad.conftest import write_files

AMD = "# CONTEXT {'gpu_vendor': 'AMD', 'guest_os': 'UBUNTU'}\nFROM rocm/pytorch\n"
NVIDIA = "# CONTEXT {'gpu_vendor': 'NVIDIA', 'guest_os': 'UBUNTU'}\nFROM nvcr.io/nvidia/pytorch:24.01-py3\n"
NONE = "# CONTEXT {'gpu_vendor': 'NONE', 'guest_os': 'UBUNTU'}\nFROM busybox\n"


def test_a_prefix_names_every_matching_dockerfile_sorted_with_its_context(tmp_path: Path) -> None:
    write_files(tmp_path, {
        "docker/dummy.ubuntu.nvidia.Dockerfile": NVIDIA,
        "docker/dummy.ubuntu.amd.Dockerfile": AMD,
        "docker/dummy.Dockerfile": "FROM scratch\n",
        "docker/dummy.ubuntu.amd.Dockerfile.dockerignore": "*.log\n",  # not a Dockerfile
        "docker/dummy2.ubuntu.amd.Dockerfile": AMD,  # another prefix
        "docker/dummy_extra.ubuntu.amd.Dockerfile": AMD,  # another prefix
        "docker/dummy.README.md": "notes\n",
    })

    files = find_dockerfiles(tmp_path, "docker/dummy")

    assert [f.path for f in files] == ["docker/dummy.Dockerfile", "docker/dummy.ubuntu.amd.Dockerfile",
                                       "docker/dummy.ubuntu.nvidia.Dockerfile"]
    assert [dict(f.context) for f in files] == [{}, {"gpu_vendor": "AMD", "guest_os": "UBUNTU"},
                                                {"gpu_vendor": "NVIDIA", "guest_os": "UBUNTU"}]
    assert [f.stem for f in files] == ["dummy", "dummy.ubuntu.amd", "dummy.ubuntu.nvidia"]


def test_paths_are_relative_to_the_base_directory(tmp_path: Path) -> None:
    write_files(tmp_path, {"scripts/d/docker/m.ubuntu.none.Dockerfile": NONE, "m.x.Dockerfile": NONE})

    assert [f.path for f in find_dockerfiles(tmp_path / "scripts" / "d", "docker/m")] == [
        "docker/m.ubuntu.none.Dockerfile"]
    assert [f.path for f in find_dockerfiles(tmp_path, "./scripts/d/../d/docker/m")] == [
        "scripts/d/docker/m.ubuntu.none.Dockerfile"]
    assert [f.path for f in find_dockerfiles(tmp_path, "m")] == ["m.x.Dockerfile"]


def test_a_prefix_without_files_or_directory_has_no_dockerfiles(tmp_path: Path) -> None:
    write_files(tmp_path, {"docker/other.ubuntu.amd.Dockerfile": AMD})

    assert find_dockerfiles(tmp_path, "docker/dummy") == ()
    assert find_dockerfiles(tmp_path, "nowhere/dummy") == ()


def test_an_index_lists_each_directory_once_and_reads_each_prefix_once(tmp_path: Path) -> None:
    write_files(tmp_path, {"docker/a.ubuntu.amd.Dockerfile": AMD, "docker/b.ubuntu.amd.Dockerfile": AMD})
    index = DockerfileIndex(tmp_path)
    first = find_dockerfiles(tmp_path, "docker/a", index)

    write_files(tmp_path, {"docker/b.ubuntu.none.Dockerfile": NONE})  # after the listing: not seen

    assert find_dockerfiles(tmp_path, "docker/a", index) is first
    assert [f.path for f in index.find("docker/b")] == ["docker/b.ubuntu.amd.Dockerfile"]
    assert [f.path for f in DockerfileIndex(tmp_path).find("docker/b")] == [
        "docker/b.ubuntu.amd.Dockerfile", "docker/b.ubuntu.none.Dockerfile"]
    with pytest.raises(ValueError, match="index is for"):
        find_dockerfiles(tmp_path / "docker", "a", index)


def test_the_context_header_is_read_from_the_first_five_lines_only(tmp_path: Path) -> None:
    write_files(tmp_path, {
        "line5.Dockerfile": "# syntax=docker/dockerfile:1\n#\n#\n#\n  # CONTEXT {'ctx_test': 1}\nFROM x\n",
        "line6.Dockerfile": "#\n#\n#\n#\n#\n# CONTEXT {'ctx_test': 1}\nFROM x\n",
        "empty.Dockerfile": "",
        "prose.Dockerfile": "# CONTEXTS are explained in README\n# CONTEXT\t{'a': 1}\nFROM x\n",
    })

    assert read_context(tmp_path / "line5.Dockerfile") == {"ctx_test": 1}
    assert read_context(tmp_path / "line6.Dockerfile") == {}
    assert read_context(tmp_path / "empty.Dockerfile") == {}
    assert read_context(tmp_path / "prose.Dockerfile") == {"a": 1}


@pytest.mark.parametrize(("header", "message"), [
    ("# CONTEXT {'gpu_vendor': 'AMD'", "malformed # CONTEXT header"),
    ("# CONTEXT {'gpu_vendor': AMD}", "malformed # CONTEXT header"),
    ("# CONTEXT ['AMD']", "# CONTEXT header is a list, not a dict"),
])
def test_a_malformed_context_header_names_file_and_line(tmp_path: Path, header: str, message: str) -> None:
    write_files(tmp_path, {"docker/m.ubuntu.amd.Dockerfile": f"# A model image\n{header}\nFROM x\n",
                           "docker/m.ubuntu.bad.Dockerfile": f"{header}\nFROM x\n"})

    with pytest.raises(ConfigError) as caught:
        find_dockerfiles(tmp_path, "docker/m")

    diagnostics = caught.value.diagnostics
    assert [(d.file, d.line, d.column) for d in diagnostics] == [
        ("docker/m.ubuntu.amd.Dockerfile", 2, 11), ("docker/m.ubuntu.bad.Dockerfile", 1, 11)]
    assert all(d.message.startswith(message) for d in diagnostics)
    assert "dict literal" in diagnostics[0].hint


def test_a_dockerfile_matches_a_context_when_every_shared_key_is_equal() -> None:
    amd = Dockerfile("docker/m.ubuntu.amd.Dockerfile", {"gpu_vendor": "AMD", "guest_os": "UBUNTU"})
    nvidia = Dockerfile("docker/m.ubuntu.nvidia.Dockerfile", {"gpu_vendor": "NVIDIA", "guest_os": "UBUNTU"})
    ctx_test = Dockerfile("docker/m.ctx.Dockerfile", {"ctx_test": "1"})
    any_context = Dockerfile("docker/m.Dockerfile", {})
    files = (amd, nvidia, ctx_test, any_context)

    amd_ubuntu = {"gpu_vendor": "AMD", "guest_os": "UBUNTU"}
    assert select_dockerfiles(files, amd_ubuntu) == (amd, ctx_test, any_context)
    assert select_dockerfiles(files, {"gpu_vendor": "AMD", "ctx_test": "2"}) == (amd, any_context)
    assert select_dockerfiles(files, {"guest_os": "UBUNTU", "ctx_test": "1"}) == files
    assert select_dockerfiles(files, {"guest_os": "CENTOS"}) == (ctx_test, any_context)
    assert select_dockerfiles(files, {}) == files


# --- base images ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("ARG BASE_DOCKER=rocm/pytorch:latest\nFROM $BASE_DOCKER\n", "rocm/pytorch:latest"),
    ('ARG BASE_DOCKER="rocm/vllm:v1"\nFROM ${BASE_DOCKER}\n', "rocm/vllm:v1"),
    ("FROM --platform=linux/amd64 ubuntu:22.04 AS build\nFROM scratch\n", "ubuntu:22.04"),
    ("# syntax=docker/dockerfile:1\nFROM scratch\nCOPY x /\n", "scratch"),
    ("from busybox:1.36 as base\n", "busybox:1.36"),
    ("ARG REPO=rocm\nARG TAG=6.1\nARG BASE=${REPO}/pytorch:${TAG}\nFROM $BASE\n", "rocm/pytorch:6.1"),
    ("ARG TAG\nFROM ubuntu:${TAG:-24.04}\n", "ubuntu:24.04"),
    ("ARG A=1 B=2\nFROM img:$A.$B\n", "img:1.2"),
    ("# CONTEXT {'gpu_vendor': 'AMD'}\n\nARG BASE_DOCKER=registry.local/\\\nbase:7\n"
     "# a comment\nFROM \\\n  $BASE_DOCKER\n", "registry.local/base:7"),
    ("ARG TAG\nFROM ubuntu:$TAG\n", None),
    ("FROM $UNDECLARED\n", None),
    ("RUN echo no from\n", None),
    ("", None),
])
def test_base_image(tmp_path: Path, text: str, expected: str | None) -> None:
    path = tmp_path / "m.Dockerfile"
    path.write_text(text)

    assert base_image(path) == expected


def test_build_args_override_arg_defaults(tmp_path: Path) -> None:
    path = tmp_path / "m.Dockerfile"
    path.write_text("ARG BASE_DOCKER=rocm/pytorch:latest\nARG TAG\nFROM $BASE_DOCKER\n")

    assert base_image(path, {"BASE_DOCKER": "localhost:5000/base:1"}) == "localhost:5000/base:1"
    assert base_image(path, {"OTHER": "x"}) == "rocm/pytorch:latest"
    path.write_text("ARG TAG\nFROM ubuntu:$TAG\n")
    assert base_image(path, {"TAG": "22.04"}) == "ubuntu:22.04"


def test_an_unreadable_dockerfile_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read Dockerfile"):
        base_image(tmp_path / "missing.Dockerfile")
