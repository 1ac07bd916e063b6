"""`madengine discover`: list a MAD package's models, selected by tags as ROCm madengine does."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from madengine.cli.options import ChdirOption, JsonOption

if TYPE_CHECKING:
    from madengine.mad.model import MadModel


def register(app: typer.Typer) -> None:
    app.command("discover")(discover)


def discover(
    tags: list[str] = typer.Option([], "--tags", "-t", metavar="TAGS", help="MAD tags (repeat, or comma-separated); "
                                   "default: all."),
    package: Path | None = typer.Option(None, "--package", "-p", metavar="DIR",
                                        help="The MAD package (default: here)."),
    chdir: Path | None = ChdirOption,
    as_json: bool = JsonOption,
) -> None:
    """List the models of a MAD package (models.json, scripts/*/models.json, get_models_json.py)."""
    import sys

    from madengine.cli import output
    from madengine.mad.discover import discover_package
    from madengine.mad.tags import select_models

    base = chdir if chdir is not None else Path.cwd()
    root = base / package if package is not None else base
    pkg = discover_package(root)
    output.warn(pkg.warnings)
    selected = select_models(pkg.models, tags or ["all"])
    if as_json:
        output.print_json([_entry(s.model, s.args) for s in selected])
        return
    rows = [(s.model.name, str(s.model.n_gpus), ",".join(s.model.tags), s.model.dockerfile, s.args.strip())
            for s in selected]
    sys.stdout.write(output.columns(("MODEL", "GPUS", "TAGS", "DOCKERFILE", "ARGS"), rows))
    sys.stdout.write(f"{len(selected)} model{'s' if len(selected) != 1 else ''} selected\n")


def _entry(model: MadModel, args: str) -> dict[str, object]:
    """A model as ROCm madengine lists it: the models.json keys, args including tag args."""
    from dataclasses import asdict

    data = asdict(model)
    extra = data.pop("extra", {})
    data.pop("origin", None)
    data["args"] = args
    data["tags"] = list(data["tags"])
    data["skip_gpu_arch"] = ",".join(data["skip_gpu_arch"])
    data["n_gpus"] = str(data["n_gpus"])
    return {**extra, **data}
