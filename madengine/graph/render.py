"""Text forms of the dependency graph: Graphviz dot, Mermaid, JSON and GraphML. Pure functions."""

from __future__ import annotations

from typing import Any

from madengine.graph.build import topological_order
from madengine.graph.dag import Dag


def to_json(graph: Dag) -> dict[str, Any]:
    order = topological_order(graph)
    return {
        "nodes": [{"address": n, **_plain(graph.nodes[n])} for n in order],
        "edges": [{"from": u, "to": v} for u, v in sorted(graph.edges)],
        "order": order,
    }


def to_dot(graph: Dag) -> str:
    lines = ["digraph madengine {", "  rankdir=LR;", '  node [fontname="monospace"];']
    for n in topological_order(graph):
        shape = "box3d" if graph.nodes[n]["kind"] == "image" else "box"
        lines.append(f"  {_dot_quote(n)} [shape={shape}];")
    for u, v in sorted(graph.edges):
        lines.append(f"  {_dot_quote(u)} -> {_dot_quote(v)};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def to_mermaid(graph: Dag) -> str:
    order = topological_order(graph)
    ids = {n: f"n{i}" for i, n in enumerate(order)}
    lines = ["flowchart LR"]
    for n in order:
        label = n.replace('"', "#quot;")
        if graph.nodes[n]["kind"] == "image":
            lines.append(f'  {ids[n]}[("{label}")]')
        else:
            lines.append(f'  {ids[n]}["{label}"]')
    for u, v in sorted(graph.edges):
        lines.append(f"  {ids[u]} --> {ids[v]}")
    return "\n".join(lines) + "\n"


def to_graphml(graph: Dag) -> str:
    """GraphML (yEd, Gephi, Cytoscape), written by networkx; tuples become comma-separated text."""
    import networkx as nx

    g = graph.to_networkx()
    for _, data in g.nodes(data=True):
        data.update({k: ",".join(v) for k, v in data.items() if isinstance(v, tuple)})
    return "\n".join(nx.generate_graphml(g)) + "\n"


def _dot_quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _plain(data: dict[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in sorted(data.items())}
