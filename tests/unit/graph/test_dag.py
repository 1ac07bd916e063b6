"""The small graph of plan and apply, checked against networkx on random graphs."""

from __future__ import annotations

import random

import networkx as nx
import pytest

from madengine.graph.dag import Dag


def _random_graph(seed: int, n: int = 30, p: float = 0.1, acyclic: bool = True) -> Dag:
    rng = random.Random(seed)
    names = [f"n{rng.randrange(10**6):06d}" for _ in range(n)]
    rng.shuffle(names)
    dag = Dag()
    for name in names:
        dag.add_node(name, kind="job", weight=rng.random())
    for i, u in enumerate(names):
        for j, v in enumerate(names):
            if u != v and (i < j or not acyclic) and rng.random() < p:
                dag.add_edge(u, v)
    return dag


@pytest.mark.parametrize("seed", range(20))
def test_order_and_ancestors_agree_with_networkx(seed: int) -> None:
    dag = _random_graph(seed)
    ref = dag.to_networkx()
    assert dag.topological_order() == list(nx.lexicographical_topological_sort(ref))
    assert dag.find_cycle() is None
    for node in list(dag)[::5]:
        assert dag.ancestors(node) == nx.ancestors(ref, node)
        assert sorted(dag.successors(node)) == sorted(ref.successors(node))
        assert sorted(dag.predecessors(node)) == sorted(ref.predecessors(node))
    keep = set(list(dag)[::2])
    assert nx.utils.graphs_equal(dag.subgraph(keep).to_networkx(), ref.subgraph(keep))


@pytest.mark.parametrize("seed", range(20))
def test_a_cycle_is_found_exactly_when_networkx_finds_one(seed: int) -> None:
    dag = _random_graph(seed, n=12, p=0.08, acyclic=False)
    ref = dag.to_networkx()
    cycle = dag.find_cycle()
    if nx.is_directed_acyclic_graph(ref):
        assert cycle is None
        return
    assert cycle, "networkx found a cycle"
    for u, v in zip(cycle, cycle[1:] + cycle[:1], strict=True):
        assert ref.has_edge(u, v)
    with pytest.raises(ValueError, match="cycle"):
        dag.topological_order()


def test_attributes_and_membership() -> None:
    dag = Dag()
    dag.add_node("a", kind="image")
    dag.add_node("a", hash="h")
    dag.add_edge("a", "b")
    assert dag.nodes["a"] == {"kind": "image", "hash": "h"}
    assert "b" in dag and "c" not in dag and len(dag) == 2
    assert dag.edges == [("a", "b")]
    sub = dag.subgraph(["a"])
    sub.nodes["a"]["hash"] = "other"
    assert dag.nodes["a"]["hash"] == "h", "a subgraph copies attributes"
