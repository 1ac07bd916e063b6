"""`madengine graph`: the dependency graph as dot, mermaid or JSON."""

from __future__ import annotations

from pathlib import Path

import typer

from madengine.cli.options import ChdirOption, FileOption, JsonOption

FORMATS = ("dot", "mermaid", "graphml")  # and JSON with --json, as every command that prints data


def _check_format(value: str) -> str:
    """The format, checked here so that the message is madengine's with any typer."""
    if value in FORMATS:
        return value
    hint = "; for JSON, pass --json" if value == "json" else ""
    raise typer.BadParameter(f"{value!r} is not one of {', '.join(FORMATS)}{hint}.")


def _complete_format(incomplete: str) -> list[str]:
    return [f for f in FORMATS if f.startswith(incomplete)]


def register(app: typer.Typer) -> None:
    app.command("graph")(graph)


def graph(
    file: Path | None = FileOption,
    chdir: Path | None = ChdirOption,
    fmt: str = typer.Option("dot", "--format", metavar="|".join(FORMATS), callback=_check_format,
                            autocompletion=_complete_format,
                            help="Output format (JSON: --json)."),
    select: list[str] = typer.Option([], "--select", metavar="PATTERN", help="Only jobs matching a model name, tag or "
                                     "address glob, and what they depend on."),
    target: list[str] = typer.Option([], "--target", metavar="TARGET", help="Only jobs on this target."),
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
    if as_json:
        output.print_json(to_json(g))
    elif fmt == "graphml":
        typer.echo(to_graphml(g), nl=False)
    elif fmt == "mermaid":
        typer.echo(to_mermaid(g), nl=False)
    else:
        typer.echo(to_dot(g), nl=False)
