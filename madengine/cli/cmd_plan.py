"""`madengine plan`: what apply would do, and why."""

from __future__ import annotations

from pathlib import Path

import typer

from madengine.cli.options import (
    ChdirOption,
    FileOption,
    JsonOption,
    LockedOption,
    ReplaceOption,
    RerunFailedOption,
    SelectOption,
    StateOption,
    TargetOption,
)


def register(app: typer.Typer) -> None:
    app.command("plan")(plan)


def plan(
    file: Path | None = FileOption,
    chdir: Path | None = ChdirOption,
    out: Path | None = typer.Option(None, "-o", "--out", metavar="FILE",
                                    help="Save the plan here, for `madengine apply FILE`."),
    detailed_exitcode: bool = typer.Option(False, "--detailed-exitcode",
                                           help="Exit 0 with no changes, 2 with changes, 1 on error."),
    target: list[str] = TargetOption,
    select: list[str] = SelectOption,
    replace: list[str] = ReplaceOption,
    rerun_failed: bool = RerunFailedOption,
    locked: bool = LockedOption,
    state: str | None = StateOption,
    show_unchanged: bool = typer.Option(True, "--show-unchanged/--changes-only", help="List up-to-date nodes too."),
    as_json: bool = JsonOption,
) -> None:
    """Compare the lock with the state and the world; show each node's action and why."""
    from madengine.cli import output
    from madengine.cli.options import madfile_path
    from madengine.pipeline import make_plan, realization
    from madengine.plan import planfile
    from madengine.plan.render import facts_notes, render_text
    from madengine.state.store import StateStore

    path = madfile_path(file, chdir)
    try:
        r = realization(path, locked=locked, select=select, targets=target, state=state, compile=False)
        if r.lock_note:  # the lock was refreshed: said, as cargo says `Updating`, on stderr
            typer.echo(r.lock_note, err=True)
        try:
            with StateStore.open(r.state_path, readonly=True) as store:
                the_plan, observed = make_plan(r, store, replace, rerun_failed)
        finally:
            r.close_backends()  # the hosts' connections, opened by observation
        for note in facts_notes(observed):  # never fatal: said on stderr, as the lock note is
            typer.echo(note, err=True)
    except Exception:
        if detailed_exitcode:  # Terraform's contract: 1 is an error whatever the error was
            _exit_one_on_error()
        raise
    if out is not None:
        planfile.save(out, the_plan, r.display_path)
    if as_json:
        output.print_json(planfile.to_json(the_plan, r.display_path))
    else:
        typer.echo(render_text(the_plan, show_unchanged), nl=False)
        if out is not None:
            typer.echo(f"Saved the plan to {out}; apply exactly it with `madengine apply {out}`.")
    if detailed_exitcode:
        raise typer.Exit(2 if the_plan.has_changes else 0)


def _exit_one_on_error() -> None:
    import sys

    from madengine.cli import output
    from madengine.errors import MadengineError

    exc = sys.exc_info()[1]
    if isinstance(exc, MadengineError):
        output.print_diagnostics(exc.diagnostics)
        raise typer.Exit(1) from None
