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
    update: bool = typer.Option(False, "--update", help="Re-resolve base image pins (all, or IMAGE's)."),
    to_update: list[str] = typer.Argument(None, metavar="IMAGE", show_default=False,
                                       help="With --update: image addresses or base image references."),
    as_json: bool = JsonOption,
) -> None:
    """Compile the madfile and write its content-addressed lock (madengine.lock)."""
    import time

    from madengine.cli.options import madfile_path
    from madengine.errors import UsageError
    from madengine.lock import LOCK_NAME, freshness
    from madengine.madfile.locate import display_path

    if to_update and not update:
        raise UsageError("IMAGE is only taken with --update", hint="madengine lock --update IMAGE")
    if update and check:
        raise UsageError("--update and --check do not go together", hint="--check never resolves anything")
    path = madfile_path(file, chdir)
    lock_path = path.parent / LOCK_NAME
    name = display_path(lock_path)

    fresh = None if update else freshness.check(path, lock_path)
    if fresh is not None:  # nothing moved since the last lock: skip compiling
        _report(as_json, name, check, written=False, images=fresh.images, jobs=fresh.jobs)
        return

    # Only now the heavy part: pydantic, the package, hashing.
    from madengine.cli import output
    from madengine.errors import StaleLockError
    from madengine.lock.lockfile import write_lock
    from madengine.pipeline import lock_project, remember_fresh

    started = time.time_ns()
    locked = lock_project(path, update=to_update or (), update_all=update and not to_update)
    images, jobs = len(locked.lock["images"]), len(locked.lock["jobs"])
    diff = locked.diff
    if check:
        if locked.stale:
            if as_json:
                output.print_json({"path": name, "stale": True, "exists": locked.on_disk is not None,
                                   "changed": diff.changed, "added": diff.added, "removed": diff.removed,
                                   "top_level": diff.top_level})
            if locked.on_disk is None:
                raise StaleLockError(f"{name} does not exist", hint="run `madengine lock` and commit the file")
            raise StaleLockError(f"{name} is stale: {diff.summary()}",
                                 hint="run `madengine lock` and commit the result")
        written = False
    else:
        written = write_lock(lock_path, locked.lock)
    remember_fresh(locked, started)
    summary = "" if not written or locked.on_disk is None else diff.summary() or "formatting"
    _report(as_json, name, check, written=written, images=images, jobs=jobs, created=locked.on_disk is None,
            summary=summary)


def _report(as_json: bool, name: str, check: bool, *, written: bool, images: int, jobs: int,
            created: bool = False, summary: str = "") -> None:
    from madengine.cli import output

    if as_json:
        output.print_json({"path": name, "stale": False, "written": written, "images": images, "jobs": jobs})
        return
    counts = f"{images} images, {jobs} jobs"
    if not written:
        typer.echo(f"{name}: up to date ({counts})")
    elif created:
        typer.echo(f"{name}: written ({counts})")
    else:
        typer.echo(f"{name}: updated ({counts}; {summary})")
