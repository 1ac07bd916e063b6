"""`madengine validate`: check the madfile and what it selects; print every error; exit 5 on any."""

from __future__ import annotations

from pathlib import Path

import typer

from madengine.cli.options import ChdirOption, FileOption, JsonOption


def register(app: typer.Typer) -> None:
    app.command("validate")(validate)


def validate(
    file: Path | None = FileOption,
    chdir: Path | None = ChdirOption,
    as_json: bool = JsonOption,
) -> None:
    """Check the madfile (YAML, keys, types, references) and compile it against its MAD package."""
    from dataclasses import asdict

    from madengine.cli import output
    from madengine.cli.options import madfile_path
    from madengine.errors import ConfigError
    from madengine.madfile.locate import display_path
    from madengine.pipeline import load_project

    path = madfile_path(file, chdir)
    try:
        loaded, project = load_project(path)
    except ConfigError as exc:
        if not as_json:
            raise  # the CLI's error boundary prints the diagnostics and exits 5
        output.print_json({"ok": False, "file": display_path(path),
                           "diagnostics": [asdict(d) for d in exc.diagnostics]})
        raise typer.Exit(int(exc.exit_code)) from None

    output.warn(project.warnings)
    mf = loaded.madfile
    counts = {"models": len(mf.models), "contexts": len(project.contexts), "targets": len(project.targets),
              "runs": len(mf.runs), "images": len(project.images), "jobs": len(project.jobs)}
    if as_json:
        output.print_json({"ok": True, "file": loaded.display_path, "name": mf.name, "diagnostics": [],
                           "counts": counts})
        return
    typer.echo(f"{loaded.display_path}: ok ({counts['models']} model entries, {counts['contexts']} contexts, "
               f"{counts['targets']} targets -> {counts['images']} images, {counts['jobs']} jobs)")
