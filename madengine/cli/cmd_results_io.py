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
from typing import Any

import typer

from madengine.cli.options import ChdirOption, FileOption, StateOption


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

    from madengine.cli.options import state_db
    from madengine.state.store import StateStore

    db = state_db(file, chdir, state)
    if output is not None and chdir is not None:
        output = chdir / output  # "as if started in DIR", like -f
    with StateStore.open(db, readonly=True) as store:  # a store not there yet reads as empty, creates nothing
        if fmt is Format.json:
            from madengine.state import transfer

            text = transfer.render(store.dump())
        else:
            attempts, images = store.attempts(), store.images()
    if fmt is Format.csv:
        from madengine.state import transfer

        text = transfer.csv_text(attempts, images)
    if output is None:
        sys.stdout.write(text)
        return
    _write(output, text)
    from madengine.madfile.locate import display_path

    typer.echo(f"{display_path(output)} written", err=True)


def import_(
    history: Path = typer.Argument(..., metavar="FILE", help="A file of `results export --format json`."),
    file: Path | None = FileOption,
    chdir: Path | None = ChdirOption,
    state: str | None = StateOption,
) -> None:
    """Add the history of another store (a file of `results export --format json`); what is there already
    is not added again."""
    from madengine.cli.options import state_db
    from madengine.errors import FileSystemError, UsageError
    from madengine.madfile.locate import display_path
    from madengine.state import transfer
    from madengine.state.lock import WorkspaceLock
    from madengine.state.store import StateStore

    if chdir is not None:
        history = chdir / history
    shown = display_path(history)
    try:
        text = history.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"{shown} does not exist", hint="give a file of `madengine results export --format json`"
                         ) from None
    except UnicodeDecodeError as exc:
        from madengine.errors import ConfigError

        raise ConfigError(f"not UTF-8 text (byte {exc.start})", file=shown) from None
    except OSError as exc:
        raise FileSystemError.of(exc, history, doing="read") or UsageError(f"cannot read {shown}: {exc}") from exc
    records = transfer.parse(text, shown)  # checked before the store is touched
    db = state_db(file, chdir, state)
    with WorkspaceLock.for_store(db).acquire("madengine results import", kind="import"), StateStore.open(db) as store:
        added = store.load(records)
    total = sum(len(records[k]) for k in ("applies", "images", "attempts"))
    new = added["applies"] + added["images"] + added["attempts"]
    typer.echo(f"imported {shown}: {_count(added['applies'], 'apply', 'applies')}, "
               f"{_count(added['images'], 'image record')}, {_count(added['attempts'], 'attempt')} "
               f"({_count(added['perf'], 'perf row')}) added; {total - new} already there")


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
