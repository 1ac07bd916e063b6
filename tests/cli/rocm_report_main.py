"""`madengine report to-html|to-email` for the tests until the `report` group is wired into the app: the
real entry point (`madengine.cli.main.run`, its error boundary and exit codes), with a `report` group
holding `cmd_report_rocm`'s commands added when the app has none. Once `report` is wired, it is used as is.

`report_cli(...)` runs it in a subprocess, as `run_cli` runs `python -m madengine`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping

import typer

from tests.conftest import REPO_ROOT, CliResult


def _main(argv: list[str]) -> None:
    from madengine.cli import cmd_report_rocm, commands, main

    wired = commands.register

    def register(app: typer.Typer) -> None:
        wired(app)
        if not any(group.name == "report" for group in app.registered_groups):
            report_app = typer.Typer(name="report", no_args_is_help=True, rich_markup_mode=None)
            cmd_report_rocm.register(report_app)
            app.add_typer(report_app, name="report")
            commands._finish(report_app, "report ")

    commands.register = register
    main.run(argv)


def report_cli(*args: str | os.PathLike[str], cwd: str | os.PathLike[str] | None = None,
               env: Mapping[str, str] | None = None) -> CliResult:
    full_env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200", **(env or {})}
    full_env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p)
    proc = subprocess.run([sys.executable, "-m", "tests.cli.rocm_report_main", "report", *(os.fspath(a) for a in args)],
                          cwd=os.fspath(cwd) if cwd is not None else None, env=full_env, input="",
                          capture_output=True, text=True, timeout=120, check=False)
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


if __name__ == "__main__":
    _main(sys.argv[1:])
