"""The dependency graph: edges, order, selection and its text forms."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from madengine.errors import ConfigError, UsageError
from madengine.graph.build import build_graph, check_acyclic, select, topological_order
from madengine.graph.dag import Dag
from madengine.graph.render import to_dot, to_graphml, to_json, to_mermaid
from madengine.lock.lockfile import build_lock
from tests.unit.compile.conftest import PACKAGE, compile_file, write_tree

MADFILE = """\
version: 1
package: pkg
models: [{select: all}]
contexts: {cpu: {gpu_vendor: NONE}, amd: {gpu_vendor: AMD}}
targets: {box: {backend: docker}, here: {backend: local}}
runs:
  - {models: [dummies], targets: [box, here], contexts: [cpu]}
  - {models: [dummy], targets: [box], contexts: [amd]}
"""


@pytest.fixture
def graph(tmp_path: Path) -> Dag:
    write_tree(tmp_path, {**PACKAGE, "madfile.yaml": MADFILE})
    project = compile_file(tmp_path / "madfile.yaml")
    return build_graph(build_lock(project), registry=project.registry, tags=project.model_tags())


def test_edges_go_from_image_to_its_jobs(graph: Dag) -> None:
    assert sorted(graph.successors("image:dummy.ubuntu.none@cpu")) == ["job:dummy2@cpu/box#1",
                                                                        "job:dummy@cpu/box#1"]
    assert list(graph.predecessors("job:dummy@cpu/here#1")) == []
    assert graph.nodes["job:dummy@amd/box#1"]["target"] == "box"
    assert graph.nodes["image:dummy.ubuntu.amd@amd"]["kind"] == "image"


def test_order_puts_dependencies_first_and_is_stable(graph: Dag) -> None:
    order = topological_order(graph)
    assert order == topological_order(graph.subgraph(reversed(list(graph))))
    for u, v in graph.edges:
        assert order.index(u) < order.index(v)


def test_select_by_model_keeps_the_image_it_needs(graph: Dag) -> None:
    sub = select(graph, ["dummy2"])
    assert sorted(sub.nodes) == ["image:dummy.ubuntu.none@cpu", "job:dummy2@cpu/box#1", "job:dummy2@cpu/here#1"]


def test_select_by_tag_glob_and_target(graph: Dag) -> None:
    assert sorted(select(graph, ["smoke"], ["here"]).nodes) == ["job:dummy@cpu/here#1"]
    assert sorted(select(graph, ["job:*@amd/*"]).nodes) == ["image:dummy.ubuntu.amd@amd", "job:dummy@amd/box#1"]
    assert set(select(graph, [], ["here"]).nodes) == {"job:dummy@cpu/here#1", "job:dummy2@cpu/here#1"}
    assert set(select(graph).nodes) == set(graph.nodes)


def test_selectors_that_match_nothing_are_errors(graph: Dag) -> None:
    with pytest.raises(UsageError, match="matches nothing"):
        select(graph, ["nosuch"])
    with pytest.raises(UsageError, match="has no jobs"):
        select(graph, [], ["elsewhere"])


def test_cycles_are_reported() -> None:
    g = Dag()
    g.add_edge("a", "b")
    g.add_edge("b", "a")
    with pytest.raises(ConfigError, match="dependency cycle: a -> b -> a"):
        check_acyclic(g)


def test_renderings(graph: Dag) -> None:
    data = to_json(graph)
    assert json.loads(json.dumps(data)) == data
    assert data["order"] == topological_order(graph)
    assert {"from": "image:dummy.ubuntu.amd@amd", "to": "job:dummy@amd/box#1"} in data["edges"]
    dot = to_dot(graph)
    assert dot.startswith("digraph madengine {") and '"image:dummy.ubuntu.amd@amd" -> "job:dummy@amd/box#1";' in dot
    mermaid = to_mermaid(graph)
    assert mermaid.startswith("flowchart LR\n") and '[("image:dummy.ubuntu.amd@amd")]' in mermaid
    assert mermaid.count("-->") == len(graph.edges)
    graphml = to_graphml(graph)
    assert graphml.startswith("<graphml") and '<node id="job:dummy@amd/box#1">' in graphml
