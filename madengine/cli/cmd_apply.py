"""`madengine apply [PLANFILE]`: do what the plan says, in dependency order, and record it."""

from __future__ import annotations

from pathlib import Path

import typer

from madengine.cli.options import (
    ChdirOption,
    FileOption,
    LockedOption,
    ReplaceOption,
    RerunFailedOption,
    SelectOption,
    StateOption,
    TargetOption,
)


def register(app: typer.Typer) -> None:
    app.command("apply")(apply)


def apply(
    planfile: Path | None = typer.Argument(None, metavar="PLANFILE", help="A plan saved by `madengine plan -o FILE`."),
    file: Path | None = FileOption,
    chdir: Path | None = ChdirOption,
    yes: bool = typer.Option(False, "--yes", "--auto-approve", "-y", help="Do not ask before applying."),
    parallelism: int = typer.Option(1, "--parallelism", "-j", min=1, metavar="N", help="Nodes to run at once."),
    keep_going: bool = typer.Option(False, "--keep-going", "-k", help="After a failure, run everything else."),
    timeout: int | None = typer.Option(None, "--timeout", min=0, metavar="SECONDS",
                                       help="Seconds per job, overriding the "
                                       "models' timeouts; 0 = none."),
    live_output: bool = typer.Option(False, "--live-output", help="Stream the jobs' logs."),
    keep_alive: bool = typer.Option(False, "--keep-alive", help="Keep containers after their runs."),
    target: list[str] = TargetOption,
    select: list[str] = SelectOption,
    replace: list[str] = ReplaceOption,
    rerun_failed: bool = RerunFailedOption,
    locked: bool = LockedOption,
    state: str | None = StateOption,
) -> None:
    """Build, push and run what the plan says; each finished node is recorded at once."""
    from madengine.apply.engine import ApplyOptions
    from madengine.cli.applying import ApplyRequest, apply_realization, exit_with
    from madengine.cli.options import madfile_path
    from madengine.errors import StaleLockError
    from madengine.pipeline import realization
    from madengine.plan import planfile as plans

    saved = None
    if planfile is not None:
        saved, madfile = plans.load(planfile)
        path = madfile_path(Path(madfile) if file is None else file, chdir)
    else:
        path = madfile_path(file, chdir)
    try:  # a saved plan is applied from the lock it was made from: never refreshed
        r = realization(path, locked=locked or saved is not None, select=select, targets=target, state=state,
                        compile=False)
    except StaleLockError as exc:
        if saved is None or locked:
            raise
        raise StaleLockError(f"{exc.diagnostics[0].message}; the saved plan {planfile} was made before that",
                             hint=f"plan again (`madengine plan -o {planfile}`), then apply that") from None
    options = ApplyOptions(parallelism=parallelism, keep_going=keep_going, timeout=timeout, keep_alive=keep_alive)
    request = ApplyRequest(saved=saved, replace=replace, rerun_failed=rerun_failed, yes=yes,
                           live_output=live_output, options=options)
    exit_with(apply_realization(r, request, "madengine apply"))
