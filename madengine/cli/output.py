"""Console output shared by the commands: diagnostics to stderr, data to stdout."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from typing import Any

from madengine.errors import Diagnostic


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
