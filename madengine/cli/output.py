"""Console output shared by the commands: diagnostics to stderr, data to stdout."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from madengine.errors import Diagnostic

if TYPE_CHECKING:
    from rich.console import Console

# rich's width when stdout is not a terminal: wide enough that nothing wraps (rich would wrap at 80 columns).
UNWRAPPED = 100_000


def print_diagnostics(diagnostics: Iterable[Diagnostic]) -> None:
    for d in diagnostics:
        sys.stderr.write(d.render() + "\n")


def error(message: str, hint: str = "") -> None:
    print_diagnostics([Diagnostic(file=None, line=None, column=None, message=message, hint=hint)])


def warn(diagnostics: Iterable[Diagnostic]) -> None:
    print_diagnostics(diagnostics)


def columns(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Aligned plain-text columns (discover, results, state list): greppable, stable in logs and tests."""
    table = [tuple(header), *(tuple(r) for r in rows)]
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip()
                     for r in table) + "\n"


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=True) + "\n")


def console() -> Console:
    """rich's console for apply's progress, result lines and summary table. On a terminal it fits the
    window; into a pipe or a CI log, lines and table cells never wrap, so an address stays on one line
    (greppable), whatever COLUMNS says."""
    from rich.console import Console

    return Console(highlight=False, width=None if sys.stdout.isatty() else UNWRAPPED)


def refuse_output_file(path: Path, option: str, example: str, hint: str | None = None) -> None:
    """A directory or a device named as the file an option writes (`-o`, `--csv`) is a usage error, said
    in one line before anything is read or written; a path through a file is for the write to refuse."""
    from madengine.errors import UsageError
    from madengine.files import NotAFileError, refuse_non_file
    from madengine.madfile.locate import display_path

    try:
        refuse_non_file(path)
    except NotAFileError as exc:
        raise UsageError(f"{option} {display_path(path)}: {exc.what}",
                         hint=hint or f"name a file, e.g. {option} {example}") from None
    except OSError:
        pass
