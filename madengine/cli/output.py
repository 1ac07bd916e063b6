"""Console output shared by the commands: diagnostics to stderr, data to stdout."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from typing import Any

from madengine.errors import Diagnostic


def print_diagnostics(diagnostics: Iterable[Diagnostic]) -> None:
    for d in diagnostics:
        sys.stderr.write(d.render() + "\n")


def error(message: str, hint: str = "") -> None:
    print_diagnostics([Diagnostic(file=None, line=None, column=None, message=message, hint=hint)])


def warn(diagnostics: Iterable[Diagnostic]) -> None:
    print_diagnostics(diagnostics)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=True) + "\n")
