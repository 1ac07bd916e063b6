"""`madengine compare [A] [B]`: did it get faster or slower, where, and which inputs changed (DESIGN §7)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from madengine.cli.options import ChdirOption, FileOption, JsonOption, StateOption

if TYPE_CHECKING:
    from madengine.results.compare import Comparison
    from madengine.state.store import StateStore

REF_HELP = "latest, previous, an apply id, @{date}, a baseline name, or a perf.csv / results JSON file"


def register(app: typer.Typer) -> None:
    app.command("compare")(compare)


def compare(
    a: str | None = typer.Argument(None, metavar="A", help=f"Before ({REF_HELP}); default: previous."),
    b: str | None = typer.Argument(None, metavar="B", help="After; default: latest."),
    noise: str | None = typer.Option(None, "--noise", metavar="PERCENT",
                                     help="The noise floor, e.g. 2% (default: the madfile's results.noise, else 2%)."),
    metric: str | None = typer.Option(None, "--metric", metavar="METRIC", help="Only this metric."),
    select: list[str] = typer.Option([], "--select", metavar="PATTERN",
                                     help="Only jobs whose address or model matches this glob (repeatable)."),
    show_all: bool = typer.Option(False, "--all", help="Show every row, not only what changed."),
    as_markdown: bool = typer.Option(False, "--markdown", help="Print a pull-request comment (markdown)."),
    fail_on_regression: bool = typer.Option(False, "--fail-on-regression",
                                            help="Exit 6 when anything regressed or failed in B "
                                                 "(after printing the comparison)."),
    as_json: bool = JsonOption,
    file: Path | None = FileOption,
    chdir: Path | None = ChdirOption,
    state: str | None = StateOption,
) -> None:
    """Compare two results: per job and metric, both values, the change, and the inputs that changed."""
    import sys

    from madengine.cli import output
    from madengine.errors import ExitCode, UsageError
    from madengine.mad.fastbuild import gc_paused
    from madengine.results import compare as cmp
    from madengine.results import resultset

    if as_json and as_markdown:
        raise UsageError("--json and --markdown are two outputs: choose one")
    floor = _noise(noise)
    before: str = a if a is not None else "previous"
    after: str = b if b is not None else "latest"
    madfile, root, store = _workspace(file, chdir, state, needed=not all(map(resultset.looks_like_file,
                                                                               (before, after))))
    # Tens of thousands of records and figures are made, none of them garbage: the collector paused
    # meanwhile (as package discovery does) saves it traversing them again and again, a third of the time.
    with gc_paused():
        try:
            cwd = chdir if chdir is not None else Path.cwd()
            project = madfile.name if madfile is not None else None
            reader = resultset.Snapshot(store) if store is not None else None  # the store read once for both
            # the project's jobs now: a job removed from the madfile is missing, not carried forward forever
            current = resultset.current_series(root) if madfile is not None else None
            side_a = resultset.resolve(before, reader, project=project, root=root, cwd=cwd, current=current)
            side_b = resultset.resolve(after, reader, project=project, root=root, cwd=cwd, current=current)
        finally:
            if store is not None:
                store.close()
    if metric is not None and not any(m == metric for s in (side_a, side_b) for v in s.series.values()
                                      for _, m in v.figures):
        known = sorted({m for s in (side_a, side_b) for v in s.series.values() for _, m in v.figures})
        raise UsageError(f"--metric {metric}: neither {side_a.label} nor {side_b.label} reports it",
                         hint=f"metrics: {', '.join(known)}" if known else "neither reports any metric")
    with gc_paused():
        comparison = cmp.compare(side_a, side_b, cmp.policy_of(madfile, floor), metric=metric,
                                 select=select or None)
    if select and not comparison.rows:
        raise UsageError(f"--select {' '.join(select)}: no job of {side_a.label} or {side_b.label} matches",
                         hint="patterns match a job's address (`job:dummy*`) or its model")
    if as_json:
        output.print_json(comparison.to_json())
    elif as_markdown:
        sys.stdout.write(cmp.markdown(comparison))
    else:
        _print_table(comparison, show_all)
    # a job of B that failed has no figure to pass a regression check with: it fails it too
    regressed = comparison.of("regressed", "failed")
    if fail_on_regression and regressed:
        for row in regressed:
            sys.stderr.write(f"{row.verdict}: {row.describe()}\n")
        raise typer.Exit(int(ExitCode.EXPECTATION))


def _noise(text: str | None) -> float | None:
    if text is None:
        return None
    from madengine.errors import UsageError
    from madengine.madfile.percent import parse_percent

    try:
        return parse_percent(text)
    except ValueError as exc:
        raise UsageError(f"--noise: {exc}", hint="write a percentage: --noise 2%") from None


def _workspace(file: Path | None, chdir: Path | None, state: str | None, *, needed: bool
               ) -> tuple[Any, Path | None, StateStore | None]:
    """The madfile (None when there is none: comparing two files needs none), the project's root (where
    `baselines/` is) and the state store (read-only; None without a madfile or a store)."""
    import os

    from madengine.cli.options import madfile_path, state_db
    from madengine.madfile.load import load_madfile
    from madengine.state.store import STATE_ENV, StateStore

    path = madfile_path(file, chdir)
    madfile = None
    if path.is_file():
        madfile = load_madfile(path).madfile
    elif file is not None:
        from madengine.errors import UsageError

        raise UsageError(f"{file}: no such madfile", hint="name the madfile with -f, or leave -f out")
    root = path.parent
    db = state_db(file, chdir, state)
    chosen = state is not None or bool(os.environ.get(STATE_ENV))
    if madfile is None and not db.exists() and not chosen:
        return None, root if (root / "baselines").is_dir() else None, None
    if not needed and not db.exists():
        return madfile, root, None
    return madfile, root, StateStore.open(db, readonly=True)


def _print_table(comparison: Comparison, show_all: bool) -> None:
    from rich.markup import escape
    from rich.table import Table

    from madengine.cli import output
    from madengine.results import compare as cmp

    console = output.console()
    rows, hidden = cmp.shown_rows(comparison, everything=show_all)
    console.print(escape(comparison.summary()), highlight=False)
    if rows:
        table = Table(show_lines=False, box=None, pad_edge=False)
        header = list(cmp.HEADER)
        header[2], header[3] = cmp.printable(comparison.a.label), cmp.printable(comparison.b.label)
        for name in header:
            table.add_column(escape(name), overflow="fold")
        styles = {"regressed": "red", "improved": "green", "failed": "red", "missing": "yellow", "new": "cyan"}
        for row in rows:
            cells = [escape(c) for c in cmp.cells(row)]
            style = styles.get(row.verdict)
            if style:
                cells[6] = f"[{style}]{cells[6]}[/]"
            table.add_row(*cells)
        console.print(table)
    if hidden:
        console.print(f"{hidden} more within noise or unchanged (--all shows them)", highlight=False)
