"""Which command lives in which module. Each module exposes `register(app)`."""

from __future__ import annotations

import importlib

import typer

# Order here is the order of `madengine --help`.
COMMAND_MODULES = (
    "init",
    "validate",
    "lock",
    "graph",
    "plan",
    "apply",
    "discover",
    "run",
    "build",
    "results",
    "state",
    "unlock",
)


def register(app: typer.Typer) -> None:
    for name in COMMAND_MODULES:
        importlib.import_module(f"madengine.cli.cmd_{name}").register(app)
