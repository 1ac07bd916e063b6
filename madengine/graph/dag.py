"""A small directed graph over node addresses: what plan and apply need, in the standard library.

`import networkx` costs a quarter of a second (it loads every algorithm it has), more than the whole
no-op `plan` may take; the graph here needs adjacency, a deterministic topological order, ancestors and
a cycle check, which are a few lines each. `to_networkx()` hands the same graph to networkx for what
it is good at (GraphML export, analysis), and the tests check these algorithms against networkx's.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import networkx as nx


class Dag:
    """Nodes keyed by address, each with a dict of attributes; edges point from dependency to dependent.

    Iteration and `nodes` keep insertion order; the algorithms sort where order matters, so the result
    never depends on how the graph was built.
    """

    def __init__(self) -> None:
        self.nodes: dict[str, dict[str, Any]] = {}
        self._succ: dict[str, dict[str, None]] = {}  # dicts as ordered sets
        self._pred: dict[str, dict[str, None]] = {}

    def add_node(self, node: str, **attrs: Any) -> None:
        if node not in self.nodes:
            self.nodes[node] = {}
            self._succ[node], self._pred[node] = {}, {}
        self.nodes[node].update(attrs)

    def add_edge(self, u: str, v: str) -> None:
        self.add_node(u)
        self.add_node(v)
        self._succ[u][v] = None
        self._pred[v][u] = None

    def __contains__(self, node: object) -> bool:
        return node in self.nodes

    def __iter__(self) -> Iterator[str]:
        return iter(self.nodes)

    def __len__(self) -> int:
        return len(self.nodes)

    def successors(self, node: str) -> Iterator[str]:
        return iter(self._succ[node])

    def predecessors(self, node: str) -> Iterator[str]:
        return iter(self._pred[node])

    @property
    def edges(self) -> list[tuple[str, str]]:
        return [(u, v) for u, succ in self._succ.items() for v in succ]

    def ancestors(self, node: str) -> set[str]:
        """Every node with a path to `node`."""
        seen: set[str] = set()
        stack = list(self._pred[node])
        while stack:
            n = stack.pop()
            if n not in seen:
                seen.add(n)
                stack.extend(self._pred[n])
        return seen

    def subgraph(self, keep: Iterable[str]) -> Dag:
        """A new graph of these nodes (attributes copied) and the edges between them."""
        kept = set(keep)
        sub = Dag()
        for n in self.nodes:
            if n in kept:
                sub.add_node(n, **self.nodes[n])
        for u, v in self.edges:
            if u in kept and v in kept:
                sub.add_edge(u, v)
        return sub

    def topological_order(self) -> list[str]:
        """Dependencies first, ties broken by address (Kahn's algorithm with a heap): the same order
        on every run. Raises ValueError on a cycle."""
        indegree = {n: len(p) for n, p in self._pred.items()}
        ready = [n for n, d in indegree.items() if d == 0]
        heapq.heapify(ready)
        order = []
        while ready:
            n = heapq.heappop(ready)
            order.append(n)
            for s in self._succ[n]:
                indegree[s] -= 1
                if indegree[s] == 0:
                    heapq.heappush(ready, s)
        if len(order) != len(self.nodes):
            raise ValueError("the graph has a cycle")
        return order

    def find_cycle(self) -> list[str] | None:
        """The nodes of one cycle in path order (the first following the last), or None."""
        state: dict[str, int] = {}  # 1: on the current path, 2: done
        for root in sorted(self.nodes):
            if root in state:
                continue
            path = [root]
            stack = [iter(sorted(self._succ[root]))]
            state[root] = 1
            while stack:
                nxt = next(stack[-1], None)
                if nxt is None:
                    state[path.pop()] = 2
                    stack.pop()
                elif state.get(nxt) == 1:
                    return path[path.index(nxt):]
                elif nxt not in state:
                    state[nxt] = 1
                    path.append(nxt)
                    stack.append(iter(sorted(self._succ[nxt])))
        return None

    def to_networkx(self) -> nx.DiGraph:
        import networkx as nx

        graph = nx.DiGraph()
        graph.add_nodes_from(self.nodes.items())
        graph.add_edges_from(self.edges)
        return graph
