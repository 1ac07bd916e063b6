"""Options shared by every command that reads a madfile (DESIGN §8)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from madengine.state.location import StateLocation

FileOption = typer.Option(None, "-f", "--file", metavar="FILE",
                          help="The madfile (default ./madfile.yaml, then ./madfile.yml).")
ChdirOption = typer.Option(None, "-C", "--chdir", metavar="DIR", help="Run as if started in DIR.")
JsonOption = typer.Option(False, "--json", help="Print machine-readable JSON.")
StateOption = typer.Option(None, "--state", metavar="PATH|URL",
                           help="The state store: an SQLite file (default .madengine/state.db beside the madfile) "
                           "or a postgresql:// URL; else $MADENGINE_STATE_URL, $MADENGINE_STATE, the madfile's "
                           "`state:`.")

# plan and apply
TargetOption = typer.Option([], "--target", metavar="TARGET", help="Only jobs on this target (repeatable).")
SelectOption = typer.Option([], "--select", metavar="PATTERN",
                            help="Only jobs matching a model name, tag or address glob (repeatable).")
ReplaceOption = typer.Option([], "--replace", metavar="ADDRESS", help="Redo this node whatever its state (repeatable).")
RerunFailedOption = typer.Option(False, "--rerun-failed", help="Run again the jobs that failed or timed out.")
LockedOption = typer.Option(False, "--locked", help="Fail if madengine.lock is stale instead of refreshing it.")

# ROCm madengine's run and build
TagsOption = typer.Option([], "--tags", "-t", metavar="TAGS", help="MAD tags (repeat, or comma-separated).")
ContextOption = typer.Option(None, "--additional-context", "-a", metavar="JSON",
                             help="Context as JSON, e.g. '{\"gpu_vendor\": \"AMD\"}'.")
ContextFileOption = typer.Option(None, "--additional-context-file", metavar="FILE", help="Context from a JSON file.")


def madfile_path(file: Path | None, chdir: Path | None) -> Path:
    """Resolve -f/-C into the madfile path (which may not exist: the loader reports that)."""
    from madengine.madfile.locate import find_madfile

    base = chdir if chdir is not None else Path.cwd()
    return find_madfile(base, file)


def state_db(file: Path | None, chdir: Path | None, state: str | None) -> StateLocation:
    """The state store of the madfile that -f/-C name (the madfile itself need not exist)."""
    from madengine.state.location import locate_store

    return locate_store(madfile_path(file, chdir), state)
