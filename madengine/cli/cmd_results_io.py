"""`madengine results export|import`: move history between state stores (SQLite, PostgreSQL) (DESIGN §7).

`results` itself stays as it is (cmd_results.py): `as_group` makes it a group that runs it when no
subcommand is given, with its options unchanged.
"""

from __future__ import annotations

import enum
import functools
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from madengine.cli.options import ChdirOption, FileOption, StateOption

if TYPE_CHECKING:
    from madengine.madfile.load import LoadedMadfile


class Format(str, enum.Enum):
    csv = "csv"
    json = "json"


def as_group(app: typer.Typer, results: Callable[..., None]) -> None:
    """Register `results` as a group that runs `results` itself without a subcommand (its options as they
    are), with `export` and `import` under it."""
    signature = inspect.signature(results)

    @functools.wraps(results)
    def callback(ctx: typer.Context, **kwargs: Any) -> None:
        if ctx.invoked_subcommand is None:
            results(**kwargs)

    ctx_param = inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context)
    callback.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[ctx_param, *signature.parameters.values()])
    group = typer.Typer(name="results", invoke_without_command=True, no_args_is_help=False, rich_markup_mode=None,
                        help=results.__doc__)
    group.callback(invoke_without_command=True)(callback)
    group.command("export")(export)
    group.command("import")(import_)
    app.add_typer(group, name="results")


def export(
    fmt: Format = typer.Option(..., "--format", metavar="csv|json",
                               help="json: every record, for `results import`; csv: one row per performance "
                               "figure, with its attempt (perf.csv's columns)."),
    output: Path | None = typer.Option(None, "-o", "--output", metavar="FILE", help="Write here, not to stdout."),
    file: Path | None = FileOption,
    chdir: Path | None = ChdirOption,
    state: str | None = StateOption,
) -> None:
    """Write the store's whole history: applies, images, attempts with their performance rows."""
    import sys

    from madengine.state.location import locate_store
    from madengine.state.store import StateStore

    madfile, project = _project(file, chdir)
    db = locate_store(madfile, state, loaded=project)
    if output is not None and chdir is not None:
        output = chdir / output  # "as if started in DIR", like -f
    with StateStore.open(db, readonly=True) as store:  # a store not there yet reads as empty, creates nothing
        if fmt is Format.json:
            from madengine.state import transfer

            text = transfer.render(store.dump(), project.madfile.name if project is not None else None)
        else:
            attempts, images = store.attempts(), store.images()
    if fmt is Format.csv:
        from madengine.results.export import csv_text

        text = csv_text(attempts, images)
    if output is None:
        sys.stdout.write(text)
        return
    _write(output, text)
    from madengine.madfile.locate import display_path

    typer.echo(f"{display_path(output)} written", err=True)


def import_(
    history: Path = typer.Argument(..., metavar="FILE", help="A file of `results export --format json`."),
    from_project: str | None = typer.Option(
        None, "--from-project", metavar="NAME",
        help="Accept the history of project NAME (this project's name before a rename); without it, "
        "another project's history is refused."),
    file: Path | None = FileOption,
    chdir: Path | None = ChdirOption,
    state: str | None = StateOption,
) -> None:
    """Add the history of another store (a file of `results export --format json`); what is there already
    is not added again. History of another project (the madfile's `name:`) is refused, as is history older
    than the store's newest apply (import it into an empty store first, then apply)."""
    from madengine import limits
    from madengine.errors import ConfigError, FileSystemError, UsageError
    from madengine.files import decode_utf8
    from madengine.madfile.locate import display_path
    from madengine.state import transfer
    from madengine.state.location import locate_store
    from madengine.state.lock import WorkspaceLock
    from madengine.state.store import OlderHistoryError, StateStore

    if chdir is not None:
        history = chdir / history
    shown = display_path(history)
    hint = "give a file of `madengine results export --format json`"
    try:
        raw = limits.read_bounded(history, shown, limits.history_bytes(), limits.HISTORY_BYTES_ENV)
    except FileNotFoundError:
        raise UsageError(f"{shown} does not exist", hint=hint) from None
    except IsADirectoryError:
        raise UsageError(f"{shown} is a directory", hint=hint) from None
    except OSError as exc:
        raise FileSystemError.of(exc, history, doing="read") or UsageError(f"cannot read {shown}: {exc}") from exc
    text = decode_utf8(raw, shown, hint="`madengine results import` reads what `results export --format json` "
                       "writes")
    parsed = transfer.parse(text, shown)  # checked before the store is touched
    madfile, loaded = _project(file, chdir)
    ours = loaded.madfile.name if loaded is not None else None
    theirs = parsed.project
    if from_project is not None and theirs != from_project:
        raise ConfigError(f"history of {_project_words(theirs)}, not of project {from_project!r} (--from-project)",
                          file=shown, hint="give --from-project the project the file was exported from")
    if from_project is None and theirs is not None and ours is not None and theirs != ours:
        raise ConfigError(f"history of project {theirs!r}, not of this project {ours!r}", file=shown,
                          hint=f"import it into {theirs!r}'s store; if this project was renamed, "
                          f"--from-project {theirs} accepts it")
    records = parsed.records
    db = locate_store(madfile, state, loaded=loaded)
    try:
        with WorkspaceLock.for_store(db).acquire("madengine results import", kind="import"), \
                StateStore.open(db) as store:
            added = store.load(records)
    except OlderHistoryError as exc:
        raise ConfigError(f"its apply of {exc.started} started before the store's newest apply ({exc.newest}): "
                          "added after it, it would be taken for the latest", file=shown,
                          hint="import the older history into an empty store first, then apply "
                          "(or import into the other store and export that)") from None
    total = sum(len(records[k]) for k in ("applies", "images", "attempts"))
    new = added["applies"] + added["images"] + added["attempts"]
    typer.echo(f"imported {shown}: {_count(added['applies'], 'apply', 'applies')}, "
               f"{_count(added['images'], 'image record')}, {_count(added['attempts'], 'attempt')} "
               f"({_count(added['perf'], 'perf row')}) added; {total - new} already there")


def _project(file: Path | None, chdir: Path | None) -> tuple[Path, LoadedMadfile | None]:
    """The madfile's path and, when there is one, the madfile (read and checked): its `name:` is the
    project whose history is exported or imported."""
    from madengine.cli.options import madfile_path
    from madengine.madfile.load import load_and_check

    path = madfile_path(file, chdir)
    return path, (load_and_check(path) if path.is_file() else None)


def _project_words(project: str | None) -> str:
    return f"project {project!r}" if project is not None else "an unnamed project"


def _count(n: int, one: str, many: str | None = None) -> str:
    return f"{n} {one if n == 1 else (many or one + 's')}"


def _write(path: Path, text: str) -> None:
    """Atomically: a reader never sees half an export. A directory there, or a file system that refuses,
    is said naming the path."""
    from madengine.errors import FileSystemError, UsageError
    from madengine.files import write_atomic
    from madengine.madfile.locate import display_path

    if path.is_dir():
        raise UsageError(f"-o {display_path(path)} is a directory", hint="give a file name, e.g. history.json")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, text.encode("utf-8"), doing="write")
    except OSError as exc:
        raise FileSystemError.of(exc, path.parent, doing="write") or UsageError(
            f"cannot write {display_path(path)}: {exc.strerror}") from exc
