"""`madengine graph` through the real entry point: formats, selection, targets, order, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli.test_lock import FILES  # the same project: two images (one per context), four jobs
from tests.conftest import RunCli
from tests.unit.compile.conftest import write_tree

USAGE = 4

# Dependencies first; ties by address (images sort before jobs, and come first anyway).
ORDER = [
    "image:dummy.ubuntu.amd@amd",
    "image:dummy.ubuntu.none@cpu",
    "job:dummy2@cpu/box#1",
    "job:dummy@amd/box#1",
    "job:dummy@cpu/box#1",
    "job:mm@cpu/here#1",
]
EDGES = [
    ("image:dummy.ubuntu.amd@amd", "job:dummy@amd/box#1"),
    ("image:dummy.ubuntu.none@cpu", "job:dummy2@cpu/box#1"),
    ("image:dummy.ubuntu.none@cpu", "job:dummy@cpu/box#1"),
]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    write_tree(tmp_path, FILES)
    return tmp_path


def order(run_cli: RunCli, cwd: Path, *args: str) -> list[str]:
    code, out, err = run_cli("graph", "--json", *args, cwd=cwd)
    assert (code, err) == (0, ""), err
    return list(json.loads(out)["order"])


def test_dot_is_the_default(run_cli: RunCli, project: Path) -> None:
    code, out, err = run_cli("graph", cwd=project)
    assert (code, err) == (0, "")
    assert out == "\n".join([
        "digraph madengine {",
        "  rankdir=LR;",
        '  node [fontname="monospace"];',
        '  "image:dummy.ubuntu.amd@amd" [shape=box3d];',
        '  "image:dummy.ubuntu.none@cpu" [shape=box3d];',
        '  "job:dummy2@cpu/box#1" [shape=box];',
        '  "job:dummy@amd/box#1" [shape=box];',
        '  "job:dummy@cpu/box#1" [shape=box];',
        '  "job:mm@cpu/here#1" [shape=box];',
        '  "image:dummy.ubuntu.amd@amd" -> "job:dummy@amd/box#1";',
        '  "image:dummy.ubuntu.none@cpu" -> "job:dummy2@cpu/box#1";',
        '  "image:dummy.ubuntu.none@cpu" -> "job:dummy@cpu/box#1";',
        "}",
    ]) + "\n"
    assert not (project / "madengine.lock").exists()  # graph computes the lock in memory, never writes it


def test_mermaid(run_cli: RunCli, project: Path) -> None:
    code, out, err = run_cli("graph", "--format", "mermaid", cwd=project)
    assert (code, err) == (0, "")
    assert out == "\n".join([
        "flowchart LR",
        '  n0[("image:dummy.ubuntu.amd@amd")]',
        '  n1[("image:dummy.ubuntu.none@cpu")]',
        '  n2["job:dummy2@cpu/box#1"]',
        '  n3["job:dummy@amd/box#1"]',
        '  n4["job:dummy@cpu/box#1"]',
        '  n5["job:mm@cpu/here#1"]',
        "  n0 --> n3",
        "  n1 --> n2",
        "  n1 --> n4",
    ]) + "\n"


def test_json(run_cli: RunCli, project: Path) -> None:
    here = run_cli("graph", "--json", cwd=project)
    from_above = run_cli("graph", "--json", "-C", project.name, cwd=project.parent)
    assert here == from_above and here.code == 0
    doc = json.loads(here.stdout)
    assert doc["order"] == ORDER == [n["address"] for n in doc["nodes"]]
    assert [(e["from"], e["to"]) for e in doc["edges"]] == EDGES
    nodes = {n["address"]: n for n in doc["nodes"]}
    assert nodes["job:mm@cpu/here#1"] | {"hash": "-"} == {
        "address": "job:mm@cpu/here#1", "context": "cpu", "hash": "-", "kind": "job", "model": "mm",
        "tags": ["micro"], "target": "here"}
    image = nodes["image:dummy.ubuntu.none@cpu"]
    assert image["kind"] == "image" and image["tag"] == "madengine/dummy.ubuntu.none:" + image["hash"][7:19]
    # The graph's hashes are the lock's, base image pins included.
    assert run_cli("lock", cwd=project).code == 0
    lock = json.loads((project / "madengine.lock").read_text(encoding="utf-8"))
    assert {n["address"]: n["hash"] for n in doc["nodes"]} == {
        addr: node["hash"] for section in ("images", "jobs") for addr, node in lock[section].items()}
    assert lock["images"]["image:dummy.ubuntu.amd@amd"]["base"]["digest"] == "sha256:" + "ab" * 32


@pytest.mark.parametrize(("args", "expected"), [
    # By model name: its jobs and the image they need.
    (["--select", "dummy2"], ["image:dummy.ubuntu.none@cpu", "job:dummy2@cpu/box#1"]),
    # By tag (`smoke` is dummy's), in both contexts.
    (["--select", "smoke"], ["image:dummy.ubuntu.amd@amd", "image:dummy.ubuntu.none@cpu",
                             "job:dummy@amd/box#1", "job:dummy@cpu/box#1"]),
    # By address glob, and two selectors are a union.
    (["--select", "job:*@amd/*", "--select", "mm"], ["image:dummy.ubuntu.amd@amd", "job:dummy@amd/box#1",
                                                     "job:mm@cpu/here#1"]),
    # An image glob keeps the image alone.
    (["--select", "image:*@cpu"], ["image:dummy.ubuntu.none@cpu"]),
    # A target keeps its jobs; with a selector, both must hold.
    (["--target", "here"], ["job:mm@cpu/here#1"]),
    (["--target", "box", "--select", "dummies"], ORDER[:5]),
])
def test_selection(run_cli: RunCli, project: Path, args: list[str], expected: list[str]) -> None:
    assert order(run_cli, project, *args) == expected


@pytest.mark.parametrize(("args", "message"), [
    (["--select", "dumy"],
     "error: --select 'dumy' matches nothing (hint: select by model name, tag, or address glob "
     "(see `madengine graph`))"),
    (["--target", "lab"], "error: --target 'lab' has no jobs (hint: targets with jobs: box, here)"),
    (["--select", "mm", "--target", "box"],
     "error: --select 'mm' matches no job on --target box (hint: its jobs run on: here)"),
])
def test_selection_errors(run_cli: RunCli, project: Path, args: list[str], message: str) -> None:
    assert run_cli("graph", *args, cwd=project) == (USAGE, "", message + "\n")


def test_unknown_format_is_a_usage_error(run_cli: RunCli, project: Path) -> None:
    code, out, err = run_cli("graph", "--format", "svg", cwd=project)
    assert (code, out) == (USAGE, "")
    assert err.endswith("Error: Invalid value for '--format': 'svg' is not one of dot, mermaid, graphml.\n")
