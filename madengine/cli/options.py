"""Options shared by every command that reads a madfile (DESIGN §8)."""

from __future__ import annotations

from pathlib import Path

import typer

FileOption = typer.Option(None, "-f", "--file",
                          help="The madfile (default ./madfile.yaml, then ./madfile.yml).")
ChdirOption = typer.Option(None, "-C", "--chdir", help="Run as if started in DIR.")
JsonOption = typer.Option(False, "--json", help="Print machine-readable JSON.")
VerboseOption = typer.Option(False, "-v", "--verbose", help="Show more detail.")


def madfile_path(file: Path | None, chdir: Path | None) -> Path:
    """Resolve -f/-C into the madfile path (which may not exist: the loader reports that)."""
    from madengine.madfile.locate import find_madfile

    base = chdir if chdir is not None else Path.cwd()
    return find_madfile(base, file)
