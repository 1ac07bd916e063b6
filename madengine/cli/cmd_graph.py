"""`madengine graph`: the dependency graph as dot, mermaid or JSON."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer

from madengine.cli.options import ChdirOption, FileOption, JsonOption


class GraphFormat(str, Enum):
    dot = "dot"
    mermaid = "mermaid"
    json = "json"
    graphml = "graphml"


def register(app: typer.Typer) -> None:
    app.command("graph")(graph)


def graph(
    file: Path | None = FileOption,
    chdir: Path | None = ChdirOption,
    fmt: GraphFormat = typer.Option(GraphFormat.dot, "--format", help="Output format."),
    select: list[str] = typer.Option([], "--select", help="Only jobs matching a model name, tag or "
                                     "address glob, and what they depend on."),
    target: list[str] = typer.Option([], "--target", help="Only jobs on this target."),
    as_json: bool = JsonOption,
) -> None:
    """Print the dependency graph (images -> jobs) in dependency order."""
    from madengine.cli import output
    from madengine.cli.options import madfile_path
    from madengine.graph.build import build_graph
    from madengine.graph.build import select as select_nodes
    from madengine.graph.render import to_dot, to_graphml, to_json, to_mermaid
    from madengine.pipeline import lock_project

    # The lock's own hashes: base images pinned as madengine.lock pins them, but never resolved over
    # the network here (a reference new to the lock stays unpinned until `madengine lock`).
    locked = lock_project(madfile_path(file, chdir), resolve=lambda ref: None)
    project = locked.project
    g = select_nodes(build_graph(locked.lock, registry=project.registry, tags=project.model_tags()), select, target)
    if as_json or fmt is GraphFormat.json:
        output.print_json(to_json(g))
    elif fmt is GraphFormat.graphml:
        typer.echo(to_graphml(g), nl=False)
    elif fmt is GraphFormat.mermaid:
        typer.echo(to_mermaid(g), nl=False)
    else:
        typer.echo(to_dot(g), nl=False)
