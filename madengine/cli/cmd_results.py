"""`madengine results`: what the applies measured, from the state store (DESIGN §7)."""

from __future__ import annotations

from pathlib import Path

import typer

from madengine.cli.options import ChdirOption, FileOption, JsonOption, StateOption

NO_RESULTS = "no results yet; run `madengine apply`"


def register(app: typer.Typer) -> None:
    from madengine.cli.cmd_results_io import as_group

    as_group(app, results)  # `results` as it is, with `results export|import` beside it


def results(
    file: Path | None = FileOption,
    chdir: Path | None = ChdirOption,
    as_json: bool = JsonOption,
    csv_file: Path | None = typer.Option(None, "--csv", metavar="FILE",
                                         help="Also write the rows to FILE in ROCm madengine's perf.csv columns."),
    history: str | None = typer.Option(None, "--history", metavar="MODEL",
                                       help="Every attempt of MODEL over time, instead of the latest of each job."),
    apply_id: int | None = typer.Option(None, "--apply", metavar="N", help="Only what apply N ran."),
    state: str | None = StateOption,
) -> None:
    """Show the latest result of every job (performance, status, duration), or a model's history."""
    import os
    import sys

    from madengine.cli import output
    from madengine.cli.options import state_db
    from madengine.errors import UsageError
    from madengine.results import perfcsv, table
    from madengine.state.location import exists
    from madengine.state.store import STATE_ENV, StateStore

    db = state_db(file, chdir, state)
    if csv_file is not None and chdir is not None:
        csv_file = chdir / csv_file  # "as if started in DIR", like -f (an absolute FILE stays as it is)
    if not exists(db):  # anything else there is for the store to refuse
        # Not an error: nothing has run here yet. Exit 0 so that scripts and CI steps that collect
        # results after an optional apply do not fail, and print empty data where data was asked for.
        # Name the file when it was chosen (--state, $MADENGINE_STATE): a mistyped path should show.
        chosen = state is not None or bool(os.environ.get(STATE_ENV))
        _empty(as_json, csv_file, f"no results yet ({db} does not exist); run `madengine apply`" if chosen
               else NO_RESULTS)
        return
    with StateStore.open(db, readonly=True) as store:
        every = store.attempts()
        known = [a.id for a in store.applies()]
        if apply_id is not None and apply_id not in known:
            span = f"applies are {known[0]}..{known[-1]}" if known else "no apply has run yet"
            raise UsageError(f"--apply {apply_id}: no such apply ({span})", hint="see `madengine results --json`")
        images = store.images() if csv_file is not None else {}
    selected = table.select(every, history=history, apply_id=apply_id)

    count = 0
    if csv_file is not None:
        count = perfcsv.write_perf_csv(csv_file, perfcsv.perf_rows(selected, images, history=every))
    if as_json:
        output.print_json(table.to_json(selected, every))
        return
    if not selected:
        if history is not None:
            known_models = table.models_with_results(every)
            sys.stderr.write(f"no results for model {history!r}; "
                             + (f"models with results: {', '.join(known_models)}\n" if known_models
                                else "run `madengine apply`\n"))
        else:
            sys.stderr.write((NO_RESULTS if apply_id is None else f"apply {apply_id} ran no jobs") + "\n")
    else:
        header = table.header(selected, history=history is not None)
        rows = table.table_rows(selected, every, with_apply=history is not None)
        sys.stdout.write(output.columns(header, rows))
        sys.stdout.write(table.summary(selected, history=history) + "\n")
    if csv_file is not None:
        from madengine.madfile.locate import display_path

        typer.echo(f"{display_path(csv_file)}: {count} row{'s' if count != 1 else ''} written")


def _empty(as_json: bool, csv_file: Path | None, message: str) -> None:
    import sys

    from madengine.cli import output
    from madengine.results import perfcsv

    if csv_file is not None:
        perfcsv.write_perf_csv(csv_file, [])  # the header alone: a valid, empty perf.csv
    if as_json:
        output.print_json([])
    else:
        sys.stderr.write(message + "\n")
