"""`madengine report -o FILE`: one self-contained HTML page of the results (DESIGN §7).

`report` is a group: without a subcommand its own options write madengine's report; ROCm madengine's
`report to-html` / `report to-email` are subcommands registered on the same group by another module.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from madengine.cli.options import ChdirOption, FileOption, StateOption

if TYPE_CHECKING:
    from madengine.madfile.model import Madfile
    from madengine.results.report import Comparison as ReportComparison
    from madengine.state.model import ApplyRecord, Attempt
    from madengine.state.store import StateStore

NO_RESULTS = "no results yet; run `madengine apply`"
# Modules (`madengine.cli.cmd_<name>`) whose `register(report_app)` adds subcommands to `report`:
# ROCm madengine's `report to-html` and `report to-email`.
SUBCOMMAND_MODULES: tuple[str, ...] = ("report_rocm",)


def register(app: typer.Typer) -> None:
    import importlib

    app.add_typer(group(importlib.import_module(f"madengine.cli.cmd_{name}").register
                        for name in SUBCOMMAND_MODULES), name="report")


def group(subcommands: Iterable[Callable[[typer.Typer], None]] = ()) -> typer.Typer:
    """`report`: runs its own callback when no subcommand is named (`report -o FILE`), else the subcommand."""
    report_app = typer.Typer(name="report", invoke_without_command=True, no_args_is_help=False,
                             rich_markup_mode=None, help="Write an HTML report of the results (or ROCm's reports).")
    report_app.callback()(report)
    for add in subcommands:
        add(report_app)
    return report_app


def report(
    ctx: typer.Context,
    output: Path | None = typer.Option(None, "-o", "--output", metavar="FILE",
                                       help="Write the report to FILE (one self-contained HTML page)."),
    against: str | None = typer.Option(None, "--against", metavar="REF",
                                       help="Compare with REF: an apply id, latest, previous, @{date}, a baseline "
                                       "name or a results file (default: the apply before the one reported)."),
    apply_id: int | None = typer.Option(None, "--apply", metavar="N",
                                        help="Report on apply N (default: the latest)."),
    history: int = typer.Option(20, "--history", metavar="N", min=0,
                                help="How many applies of history to chart (0: none)."),
    file: Path | None = FileOption,
    chdir: Path | None = ChdirOption,
    state: str | None = StateOption,
) -> None:
    """Write one self-contained HTML page: summary, a table per context and target, a chart per metric,
    the comparison with the previous apply or a baseline, history, failures with their logs' tails."""
    from madengine.errors import UsageError

    if ctx.invoked_subcommand is not None:  # `report to-html ...`: the subcommand does the work
        given = [p.opts[0] for p in ctx.command.params if p.name and getattr(  # click's ParameterSource, by name
            ctx.get_parameter_source(p.name), "name", "DEFAULT") not in ("DEFAULT", "DEFAULT_MAP")]
        if given:  # accepted, they would do nothing
            raise UsageError(f"{', '.join(given)} {'is' if len(given) == 1 else 'are'} for `madengine report -o FILE`, "
                             f"not `report {ctx.invoked_subcommand}`",
                             hint=f"see `madengine report {ctx.invoked_subcommand} --help`")
        return

    if output is None:
        raise UsageError("report: -o/--output FILE is required", hint="madengine report -o report.html")
    _write_report(output, against=against, apply_id=apply_id, history=history, file=file, chdir=chdir, state=state)


def _write_report(output: Path, *, against: str | None, apply_id: int | None, history: int, file: Path | None,
                  chdir: Path | None, state: str | None) -> None:
    import os

    from madengine.cli.options import madfile_path, state_db
    from madengine.cli.output import refuse_output_file
    from madengine.madfile.locate import display_path
    from madengine.results import report as rep
    from madengine.state.location import describe, local_dir
    from madengine.state.model import utc_now
    from madengine.state.store import STATE_ENV, StateStore

    db = state_db(file, chdir, state)
    if chdir is not None:
        output = chdir / output  # "as if started in DIR", like -f (an absolute FILE stays as it is)
    refuse_output_file(output, "-o", "report.html")
    path = madfile_path(file, chdir)
    madfile = _madfile(path, file)
    project = (madfile.name if madfile is not None else None) or path.resolve().parent.name
    cwd = chdir if chdir is not None else Path.cwd()
    if db.exists():
        with StateStore.open(db, readonly=True) as store:
            applies = store.applies()
            attempts = store.attempts()
            _check_apply(apply_id, applies)
            comparison, note = _comparison(store, applies, attempts, apply_id, against, madfile, path.parent, cwd)
    else:
        applies, attempts = [], []
        _check_apply(apply_id, applies)
        comparison, note = _comparison(None, applies, attempts, apply_id, against, madfile, path.parent, cwd)
    from madengine.results.resultset import current_series

    current = current_series(path.parent) if madfile is not None else None  # the jobs the project still has
    shown = rep.latest(attempts, apply_id, current)
    tails = {a.id: rep.log_tail(local_dir(db), a.log_path) for a in rep.failed(shown)[:rep.MAX_FAILURES]}
    page = rep.render(rep.build(project=project, generated=utc_now(), applies=applies, attempts=attempts,
                                apply_id=apply_id, history=history, comparison=comparison, comparison_note=note,
                                tails=tails, current=current))
    data = page.encode("utf-8")
    _write_atomically(output, data)
    what = f"{len(shown)} job{'s' if len(shown) != 1 else ''}" if shown else NO_RESULTS
    if not db.exists() and (state is not None or os.environ.get(STATE_ENV)):  # a mistyped path should show
        what = f"no results yet: {display_path(db) if isinstance(db, Path) else describe(db)} does not exist"
    typer.echo(f"{display_path(output)}: {_size(len(data))} written ({what})")


def _madfile(path: Path, file: Path | None) -> Madfile | None:
    """The madfile, when there is one: the project's name, and how compare judges (`results:`, `expect:`).
    One named by -f must exist."""
    from madengine.errors import UsageError
    from madengine.madfile.load import load_madfile

    if path.is_file():
        return load_madfile(path).madfile
    if file is not None:
        raise UsageError(f"{file}: no such madfile", hint="name the madfile with -f, or leave -f out")
    return None


def _check_apply(apply_id: int | None, applies: Sequence[ApplyRecord]) -> None:
    from madengine.errors import UsageError

    if apply_id is not None and apply_id not in {a.id for a in applies}:
        span = f"applies are {applies[0].id}..{applies[-1].id}" if applies else "no apply has run yet"
        raise UsageError(f"--apply {apply_id}: no such apply ({span})", hint="see `madengine results --json`")


def _comparison(store: StateStore | None, applies: Sequence[ApplyRecord], attempts: Sequence[Attempt],
                apply_id: int | None, against: str | None, madfile: Madfile | None, root: Path,
                cwd: Path) -> tuple[ReportComparison | None, str]:
    """What the reported apply measured (the newest apply with results when none is named) against REF
    (default: the apply with results before it), as `madengine compare` compares; or None and why not."""
    from madengine.results import compare, resultset
    from madengine.results import report as rep

    chosen = [a for a in applies if apply_id is None or a.id <= apply_id]
    by_apply: dict[int, list[Attempt]] = {}
    for attempt in attempts:
        by_apply.setdefault(attempt.apply_id, []).append(attempt)
    found: list[tuple[ApplyRecord, list[Attempt]]] = []  # applies that recorded results, newest first
    if store is not None:
        for record in reversed(chosen):  # newest first
            mine = by_apply.get(record.id, [])
            if resultset.has_results(mine):
                found.append((record, mine))
                if len(found) == (1 if against is not None else 2):
                    break
    if not found or (apply_id is not None and found[0][0].id != apply_id):
        if against is not None:  # still say a bad reference is one
            resultset.resolve(against, store, project=madfile.name if madfile else None, root=root, cwd=cwd)
        return None, "no results to compare" if apply_id is None else f"apply {apply_id} recorded no results"
    assert store is not None
    project = madfile.name if madfile else None
    current = resultset.current_series(root) if madfile is not None else None  # the jobs the project still has
    after = resultset.load_apply(store, found[0][0], _as_of(attempts, found[0][0].id), project=project,
                                 current=current)
    if against is not None:
        before = resultset.resolve(against, store, project=project, root=root, cwd=cwd, current=current)
    elif len(found) > 1:
        before = resultset.load_apply(store, found[1][0], _as_of(attempts, found[1][0].id), project=project,
                                      current=current)
    else:
        return None, f"{after.label} is the first apply with results: nothing earlier to compare with"
    return rep.comparison(compare.compare(before, after, compare.policy_of(madfile))), ""


def _as_of(attempts: Sequence[Attempt], apply_id: int) -> list[Attempt]:
    """The latest attempt of each job as of an apply: all that a result set as of it reads of the attempts
    (`resultset.from_apply`), a thousand where the store holds twenty thousand."""
    from madengine.results import resultset

    return resultset.series_firsts([a for a in attempts if a.apply_id <= apply_id])


def _write_atomically(output: Path, data: bytes) -> None:
    """A reader (a browser, a web server) never sees half a page; a page not written leaves nothing behind."""
    from madengine.errors import UsageError
    from madengine.files import write_atomic
    from madengine.madfile.locate import display_path

    shown = display_path(output)
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(output, data, shown=shown, doing="write")
    except OSError as exc:
        from madengine.errors import FileSystemError

        blocker = next((p for p in output.parents if p.exists() and not p.is_dir()), None)
        why = f"{display_path(blocker)} is not a directory" if blocker is not None else exc.strerror or str(exc)
        raise FileSystemError.of(exc, shown, doing="write") or UsageError(
            f"cannot write {shown}: {why}", hint="name a file in a directory you can write") from None


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} bytes"
    if n < 1024 * 1024:
        return f"{n / 1024:.1f} KB"
    return f"{n / 1024 / 1024:.1f} MB"
