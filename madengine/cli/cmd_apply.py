"""`madengine apply [PLANFILE]`: do what the plan says, in dependency order, and record it."""

from __future__ import annotations

from pathlib import Path

import typer

from madengine.cli.options import ChdirOption, FileOption


def register(app: typer.Typer) -> None:
    app.command("apply")(apply)


def apply(
    planfile: Path | None = typer.Argument(None, help="A plan saved by `madengine plan -o FILE`."),
    file: Path | None = FileOption,
    chdir: Path | None = ChdirOption,
    yes: bool = typer.Option(False, "--yes", "--auto-approve", "-y", help="Do not ask before applying."),
    parallelism: int = typer.Option(1, "--parallelism", "-j", min=1, help="Nodes to run at once."),
    keep_going: bool = typer.Option(False, "--keep-going", "-k", help="After a failure, run everything else."),
    timeout: int | None = typer.Option(None, "--timeout", min=0, help="Seconds per job, overriding the "
                                       "models' timeouts; 0 = none."),
    live_output: bool = typer.Option(False, "--live-output", help="Stream the jobs' logs."),
    keep_alive: bool = typer.Option(False, "--keep-alive", help="Keep containers after their runs."),
    target: list[str] = typer.Option([], "--target", help="Only jobs on this target (repeatable)."),
    select: list[str] = typer.Option([], "--select", help="Only jobs matching a model name, tag or address glob."),
    replace: list[str] = typer.Option([], "--replace", help="Redo this node whatever its state (repeatable)."),
    rerun_failed: bool = typer.Option(False, "--rerun-failed", help="Run again the jobs that failed or timed out."),
    locked: bool = typer.Option(False, "--locked", help="Fail if madengine.lock is stale instead of refreshing it."),
    state: str | None = typer.Option(None, "--state", help="The state database (default .madengine/state.db)."),
) -> None:
    """Build, push and run what the plan says; each finished node is recorded at once."""
    import sys
    from collections import Counter

    from rich.console import Console
    from rich.markup import escape

    from madengine.apply.engine import Applier, ApplyOptions
    from madengine.cli.options import madfile_path
    from madengine.cli.progress import RichReporter
    from madengine.errors import UsageError
    from madengine.pipeline import make_plan, realization
    from madengine.plan import planfile as plans
    from madengine.plan.render import plan_lines
    from madengine.state.lock import WorkspaceLock
    from madengine.state.store import StateStore

    saved = None
    if planfile is not None:
        saved, madfile = plans.load(planfile)
        path = madfile_path(Path(madfile) if file is None else file, chdir)
    else:
        path = madfile_path(file, chdir)
    console = Console(stderr=False, highlight=False)
    r = realization(path, locked=locked or saved is not None, select=select, targets=target, state=state)
    with WorkspaceLock.for_store(r.state_path).acquire("madengine apply"), StateStore.open(r.state_path) as store:
        if saved is not None:
            plans.check_current(saved, r.lock_hash, store.serial())
            the_plan = saved
        else:
            the_plan = make_plan(r, store, replace, rerun_failed)
            for style, text in plan_lines(the_plan, show_unchanged=False):
                console.print(f"[{style}]{escape(text)}[/]", highlight=False)
            console.print(the_plan.summary())
            if the_plan.has_changes and not yes:
                if not sys.stdin.isatty():
                    raise UsageError("apply needs a confirmation and stdin is not a terminal",
                                     hint="pass --yes (or --auto-approve), or apply a saved plan file")
                if not typer.confirm("Apply this plan?", default=False):
                    console.print("Nothing applied.")
                    return
        if not the_plan.has_changes:
            console.print("Nothing to do.")
            return
        options = ApplyOptions(parallelism=parallelism, keep_going=keep_going, timeout=timeout,
                               keep_alive=keep_alive)
        durations = {a: att.duration for a, att in store.latest_attempts().items() if att.duration}
        with RichReporter(console, live_output=live_output) as reporter:
            result = Applier(the_plan, r.locked.lock, r.locked.project, store, r.backends, r.workspace,
                             options, reporter, durations=durations).run()
        console.print(reporter.summary())
        counts = Counter(s.value for s in result.statuses.values())
        console.print(f"Apply {result.outcome.lower()}: " + ", ".join(f"{n} {s}" for s, n in counts.items()))
    if result.exit_code:
        raise typer.Exit(int(result.exit_code))

