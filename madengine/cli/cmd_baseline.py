"""`madengine baseline save|list|show|rm`: reviewable result sets kept beside the madfile (DESIGN §7)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from madengine.cli.options import ChdirOption, FileOption, JsonOption, StateOption

if TYPE_CHECKING:
    from madengine.madfile.load import LoadedMadfile

NameArgument = typer.Argument(..., metavar="NAME", help="The baseline's name: its file is baselines/NAME.json.")


def register(app: typer.Typer) -> None:
    baseline_app = typer.Typer(name="baseline", no_args_is_help=True, rich_markup_mode=None,
                               help="Save, list, show and remove baselines (baselines/NAME.json beside the madfile).")
    baseline_app.command("save")(save)
    baseline_app.command("list")(list_)
    baseline_app.command("show")(show)
    baseline_app.command("rm")(rm)
    app.add_typer(baseline_app, name="baseline")


def save(
    name: str = NameArgument,
    from_apply: str = typer.Option("latest", "--from", metavar="APPLY",
                                   help="The apply whose results to keep: an id, `latest` (default), `previous` "
                                        "or @{date}."),
    file: Path | None = FileOption,
    chdir: Path | None = ChdirOption,
    state: str | None = StateOption,
) -> None:
    """Write an apply's results to baselines/NAME.json (sorted, stable bytes: review and commit it)."""
    from madengine.cli.options import state_db
    from madengine.errors import UsageError
    from madengine.results import baseline
    from madengine.results.resultset import current_series, resolve
    from madengine.state.store import StateStore

    baseline.check_name(name)  # before anything is read
    # Only an apply: a baseline of a baseline or of a results file would lose where its numbers came from.
    if not (from_apply in ("latest", "previous") or from_apply.isdigit()
            or (from_apply.startswith("@{") and from_apply.endswith("}"))):
        raise UsageError(f"--from {from_apply[:40]!r} is not an apply",
                         hint="name an apply id, `latest`, `previous` or @{YYYY-MM-DD}")
    loaded = _madfile(file, chdir)
    db = state_db(file, chdir, state)
    if not db.exists():
        raise UsageError("no apply has run yet: no results to keep", hint="run `madengine apply` first")
    with StateStore.open(db, readonly=True) as store:
        rs = resolve(from_apply, store, project=loaded.madfile.name, root=loaded.root,
                     current=current_series(loaded.root))  # only the jobs the project still has
    written = baseline.save(loaded.root, name, rs)
    jobs, figures = len(rs.series), rs.figure_count()
    what = (f"{jobs} job{'s' if jobs != 1 else ''}, {figures} figure{'s' if figures != 1 else ''} "
            f"from apply {rs.apply_id}")
    typer.echo(f"{_shown(loaded, name)} {'written' if written else 'unchanged'} ({what})")


def list_(
    file: Path | None = FileOption,
    chdir: Path | None = ChdirOption,
    as_json: bool = JsonOption,
) -> None:
    """List the saved baselines: name, the apply they were taken from, its date, jobs."""
    import sys

    from madengine.cli import output
    from madengine.results import baseline

    loaded = _madfile(file, chdir)
    entries = baseline.entries(loaded.root, loaded.madfile.name)
    if as_json:
        output.print_json([e.to_json() for e in entries])
        return
    if not entries:
        sys.stderr.write("no baselines yet; save one: `madengine baseline save NAME`\n")
        return
    rows = [(e.name, str(e.rs.apply_id) if e.rs.apply_id is not None else "", e.rs.created or "",
             str(len(e.rs.series)), str(e.rs.figure_count())) for e in entries]
    sys.stdout.write(output.columns(("NAME", "APPLY", "DATE", "JOBS", "FIGURES"), rows))


def show(
    name: str = NameArgument,
    file: Path | None = FileOption,
    chdir: Path | None = ChdirOption,
    as_json: bool = JsonOption,
) -> None:
    """Show a baseline's figures: per job and metric, the median and spread (median absolute deviation) of
    its repeats."""
    import sys

    from madengine.cli import output
    from madengine.results import baseline
    from madengine.results.perfcsv import format_number

    baseline.check_name(name)
    loaded = _madfile(file, chdir)
    rs = baseline.load(loaded.root, name, loaded.madfile.name)
    if as_json:
        output.print_json({"name": name, "file": baseline.shown(name), **rs.to_json()})
        return
    rows = []
    for key in sorted(rs.series):
        series = rs.series[key]
        if not series.figures:
            rows.append((key, "", "", "", "", "", series.status.value))
        for (model, metric), figure in sorted(series.figures.items()):
            rows.append((key, model, metric, format_number(figure.median), f"{figure.spread:.1%}",
                         str(len(figure.values)), series.status.value))
    sys.stdout.write(output.columns(("JOB", "MODEL", "METRIC", "MEDIAN", "SPREAD", "REPEATS", "STATUS"), rows))
    jobs = len(rs.series)
    sys.stdout.write(f"baseline {name}: {jobs} job{'s' if jobs != 1 else ''} from apply {rs.apply_id} "
                     f"({rs.created or 'no date'}), project {rs.project or '(unnamed)'}\n")


def rm(
    name: str = NameArgument,
    file: Path | None = FileOption,
    chdir: Path | None = ChdirOption,
) -> None:
    """Remove baselines/NAME.json (gates against it then fail validation until it is saved again)."""
    from madengine.results import baseline

    baseline.check_name(name)
    loaded = _madfile(file, chdir)
    baseline.remove(loaded.root, name)
    typer.echo(f"{_shown(loaded, name)} removed")


def _madfile(file: Path | None, chdir: Path | None) -> LoadedMadfile:
    """The madfile, read and checked: its directory holds baselines/, its `name:` is their project."""
    from madengine.cli.options import madfile_path
    from madengine.madfile.load import load_and_check

    return load_and_check(madfile_path(file, chdir))


def _shown(loaded: LoadedMadfile, name: str) -> str:
    """The baseline's file as the user would type it: relative to where they are, like the madfile."""
    from madengine.results.baseline import shown

    prefix = loaded.display_path.rpartition("/")[0]
    return f"{prefix}/{shown(name)}" if prefix else shown(name)
