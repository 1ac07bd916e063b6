"""The dependency graph over node addresses, built from the lock (DESIGN §1).

Edges point from a dependency to its dependent (image -> job). Each node carries its kind, hash and,
for jobs, the model, tags and target that `--select` and `--target` filter on. The lock holds all of
it but the tags and the registry, which the caller passes: from the compiled project, or from the
record `lock.freshness` keeps of it when the lock is fresh.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from madengine.errors import ConfigError, UsageError
from madengine.graph.dag import Dag
from madengine.lock.lockfile import Lock


def build_graph(lock: Lock, *, registry: str | None, tags: Mapping[str, Sequence[str]]) -> Dag:
    """`tags`: each model's tags, by model name."""
    graph = Dag()
    for addr, image in lock["images"].items():
        graph.add_node(addr, kind="image", hash=image["hash"], tag=image["tag"])
    for addr, job in lock["jobs"].items():
        graph.add_node(addr, kind="job", hash=job["hash"], model=job["model"], tags=tuple(tags.get(job["model"], ())),
                       target=job["target"], context=job["context"])
        for dep in job["depends_on"]:
            graph.add_edge(dep, addr)
    for addr in lock["images"]:
        # Where the image must exist, from every job that uses it (kept when --select drops the jobs).
        graph.nodes[addr]["targets"] = tuple(sorted({graph.nodes[j]["target"] for j in graph.successors(addr)}))
    if registry:
        # With a registry, every image that some job uses is pushed after it is built.
        for addr, image in lock["images"].items():
            push = push_address(addr)
            graph.add_node(push, kind="push", hash=image["hash"], image=addr)
            graph.add_edge(addr, push)
    check_acyclic(graph)
    return graph


def push_address(image_address: str) -> str:
    """`image:x@cpu` -> `push:x@cpu`."""
    return "push:" + image_address.removeprefix("image:")


def image_address(address: str) -> str:
    """The image a node realizes: `push:x@cpu` -> `image:x@cpu`; an image address is its own."""
    return "image:" + address.removeprefix("push:") if address.startswith("push:") else address


def check_acyclic(graph: Dag) -> None:
    cycle = graph.find_cycle()
    if cycle:
        raise ConfigError("dependency cycle: " + " -> ".join([*cycle, cycle[0]]),
                          hint="remove one of the depends_on edges in the cycle")


def topological_order(graph: Dag) -> list[str]:
    """Dependencies first; ties broken by address, so the order is the same on every run."""
    return graph.topological_order()


def select(graph: Dag, selectors: Sequence[str] = (), targets: Sequence[str] = ()) -> Dag:
    """The subgraph of the jobs matching every filter, with everything they depend on.

    A selector matches a job by model name, tag, or address glob (`job:dummy*@cpu/*`), and an image by
    address glob; `--target` keeps only jobs on those targets. A selector that matches nothing is an
    error, so a typo never silently plans nothing.
    """
    if not selectors and not targets:
        return graph  # everything: nothing to narrow (callers never change the graph they get)
    jobs = {n for n, d in graph.nodes.items() if d["kind"] == "job"}
    if targets:
        known = {graph.nodes[n]["target"] for n in jobs}
        unknown = [t for t in targets if t not in known]
        if unknown:
            raise UsageError(f"--target {unknown[0]!r} has no jobs", hint=_choices(known))
        jobs = {n for n in jobs if graph.nodes[n]["target"] in targets}
    keep: set[str] = set()
    if selectors:
        for sel in selectors:
            matched = [n for n in graph.nodes if _matches(n, graph.nodes[n], sel)]
            if not matched:
                raise UsageError(f"--select {sel!r} matches nothing",
                                 hint="select by model name, tag, or address glob (see `madengine graph`)")
            kept = [m for m in matched if graph.nodes[m]["kind"] != "job" or m in jobs]
            if not kept:
                raise UsageError(f"--select {sel!r} matches no job on --target {', '.join(targets)}",
                                 hint=f"its jobs run on: {', '.join(sorted(_targets_of(graph, matched)))}")
            keep.update(kept)
    else:
        keep.update(jobs)
        if not targets:
            keep.update(graph.nodes)
    closure = set(keep)
    for n in keep:
        closure.update(graph.ancestors(n))
    # An image that is kept is also pushed (a push is part of realizing it for remote targets).
    closure.update(s for n in list(closure) for s in graph.successors(n) if graph.nodes[s]["kind"] == "push")
    return graph.subgraph(closure)


def _matches(addr: str, data: dict[str, Any], selector: str) -> bool:
    if fnmatch.fnmatchcase(addr, selector):
        return True
    if data["kind"] != "job":
        return False
    return selector in (data["model"], *data["tags"])


def _targets_of(graph: Dag, nodes: Iterable[str]) -> set[str]:
    return {graph.nodes[n]["target"] for n in nodes if graph.nodes[n]["kind"] == "job"}


def _choices(names: Iterable[str]) -> str:
    return "targets with jobs: " + ", ".join(sorted(names))
