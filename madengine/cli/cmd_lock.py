"""`madengine lock`: write or verify madengine.lock."""

from __future__ import annotations

from pathlib import Path

import typer

from madengine.cli.options import ChdirOption, FileOption, JsonOption


def register(app: typer.Typer) -> None:
    app.command("lock")(lock)


def lock(
    file: Path | None = FileOption,
    chdir: Path | None = ChdirOption,
    check: bool = typer.Option(False, "--check", help="Do not write; exit 1 if the lock is stale."),
    as_json: bool = JsonOption,
) -> None:
    """Compile the madfile and write its content-addressed lock (madengine.lock)."""
    from madengine.cli import output
    from madengine.cli.options import madfile_path
    from madengine.errors import StaleLockError
    from madengine.lock.lockfile import write_lock
    from madengine.pipeline import lock_project

    locked = lock_project(madfile_path(file, chdir))
    counts = f"{len(locked.lock['images'])} images, {len(locked.lock['jobs'])} jobs"
    shown = locked.loaded.display_path.rsplit("/", 1)[0] + "/" if "/" in locked.loaded.display_path else ""
    name = f"{shown}{locked.lock_path.name}"
    diff = locked.diff
    if check:
        if as_json:
            output.print_json({"stale": locked.stale, "added": diff.added, "removed": diff.removed,
                               "changed": diff.changed, "top_level": diff.top_level})
        if locked.on_disk is None:
            raise StaleLockError(f"{name} does not exist", hint="run `madengine lock` and commit the file")
        if locked.stale:
            raise StaleLockError(f"{name} is stale: {diff.summary()}",
                                 hint="run `madengine lock` and commit the result")
        if not as_json:
            typer.echo(f"{name}: up to date ({counts})")
        return
    written = write_lock(locked.lock_path, locked.lock)
    if as_json:
        output.print_json({"path": name, "written": written, "images": len(locked.lock["images"]),
                           "jobs": len(locked.lock["jobs"]), "changed": diff.changed,
                           "added": diff.added, "removed": diff.removed})
    elif not written:
        typer.echo(f"{name}: up to date ({counts})")
    elif locked.on_disk is None:
        typer.echo(f"{name}: written ({counts})")
    else:
        typer.echo(f"{name}: updated ({counts}; {diff.summary() or 'formatting'})")
