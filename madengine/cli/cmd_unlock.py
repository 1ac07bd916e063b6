"""`madengine unlock`: clear the workspace lock left by a dead apply (DESIGN §5, §8)."""

from __future__ import annotations

from pathlib import Path

import typer

from madengine.cli.options import ChdirOption, FileOption, StateOption


def register(app: typer.Typer) -> None:
    app.command("unlock")(unlock)


def unlock(
    file: Path | None = FileOption,
    chdir: Path | None = ChdirOption,
    state: str | None = StateOption,
    force: bool = typer.Option(False, "--force", help="Remove the lock even though its holder is running."),
) -> None:
    """Clear the lock a dead apply left (--force: even a live one)."""
    from madengine.cli import output
    from madengine.cli.options import state_db
    from madengine.errors import Diagnostic
    from madengine.state.lock import WorkspaceLock

    lock = WorkspaceLock.for_store(state_db(file, chdir, state))
    done = lock.unlock(force=force)
    if done.outcome == "free":
        typer.echo("state is not locked")
    elif done.outcome == "stale":
        who = done.holder.describe() if done.holder else "a dead process"
        typer.echo(f"unlocked: removed the lock record of {who}, which is no longer running")
    else:
        holder = done.holder
        who = f"pid {holder.pid} on {holder.host}" if holder else "another process"
        typer.echo(f"unlocked: removed the lock of {holder.describe() if holder else who}")
        output.warn([Diagnostic(None, None, None, f"{who} is still running: it and the next apply may now run "
                                f"at once", hint="stop it first if it is an apply", severity="warning")])
