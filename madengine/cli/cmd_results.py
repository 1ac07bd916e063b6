"""`madengine results`: what the applies measured, from the state store (DESIGN §7)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from madengine.cli.options import ChdirOption, FileOption, JsonOption, StateOption

if TYPE_CHECKING:
    from madengine.results.history import Step
    from madengine.state.model import Attempt

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
                                       help="MODEL's figures across applies: each apply's median, the change "
                                            "from the one before and the inputs that changed."),
    metric: str | None = typer.Option(None, "--metric", metavar="METRIC", help="With --history: only this metric."),
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

    if metric is not None and history is None:
        raise UsageError("--metric goes with --history MODEL", hint="madengine results --history MODEL --metric M")
    db = state_db(file, chdir, state)
    if csv_file is not None and chdir is not None:
        csv_file = chdir / csv_file  # "as if started in DIR", like -f (an absolute FILE stays as it is)
    if csv_file is not None:
        output.refuse_output_file(csv_file, "--csv", "perf.csv")
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
        steps = _history(store, file, chdir, history, metric, every, apply_id) if history is not None else None
    # A model that never ran is a mistake (a typo) once anything has run; before, nothing has run yet.
    known_models = table.models_with_results(every) if history is not None else []
    if history is not None and known_models and not table.select(every, history=history):
        raise UsageError(f"--history {history}: no results for model {history!r}",
                         hint=f"models with results: {', '.join(known_models)}")
    if steps == [] and metric is not None and history is not None and table.select(every, history=history):
        raise UsageError(f"--metric {metric}: {history} reported no {metric}",
                         hint=f"its metrics: {', '.join(_metrics(every, history))}")
    selected = table.select(every, history=history, apply_id=apply_id)

    count = 0
    if csv_file is not None:
        csv_rows = (perfcsv.perf_rows(selected, images, history=every) if history is None
                    else perfcsv.history_rows(selected, images, history, metric, history=every))
        count = perfcsv.write_perf_csv(csv_file, csv_rows)
    if as_json:
        output.print_json([s.to_json() for s in steps] if steps is not None else table.to_json(selected, every))
        return
    if not selected:
        if history is not None:  # nothing has run yet, or not in apply N (an unknown model is refused above)
            sys.stderr.write(f"no results for model {history!r} in apply {apply_id}\n" if known_models
                             else f"no results for model {history!r}; run `madengine apply`\n")
        else:
            sys.stderr.write((NO_RESULTS if apply_id is None else f"apply {apply_id} ran no jobs") + "\n")
    elif history is not None and steps is not None:
        from madengine.results import history as hist

        sys.stdout.write(output.columns(hist.HEADER, [s.cells() for s in steps]))
        sys.stdout.write(hist.summary(steps, history) + "\n")
    else:
        header = table.header(selected, history=history is not None)
        rows = table.table_rows(selected, every, with_apply=history is not None)
        sys.stdout.write(output.columns(header, rows))
        sys.stdout.write(table.summary(selected, history=history) + "\n")
    if csv_file is not None:
        from madengine.madfile.locate import display_path

        typer.echo(f"{display_path(csv_file)}: {count} row{'s' if count != 1 else ''} written")


def _history(store: Any, file: Path | None, chdir: Path | None, model: str, metric: str | None,
             every: list[Attempt], apply_id: int | None) -> list[Step]:
    """`model`'s steps across applies (of apply `apply_id` only, if given), judged by the madfile's
    `results:` settings where there is a madfile."""
    from madengine.cli.options import madfile_path
    from madengine.results import history as hist
    from madengine.results.compare import policy_of
    from madengine.results.perfcsv import is_job

    path = madfile_path(file, chdir)
    madfile = None
    if path.is_file():
        from madengine.madfile.load import load_madfile

        madfile = load_madfile(path).madfile
    mine = [a for a in every if is_job(a) and (a.inputs.get("model") == model or any(r.model == model
                                                                                     for r in a.perf))]
    addresses = sorted({a.inputs["image"] for a in mine if isinstance(a.inputs.get("image"), str)})
    images = {address: store.image_records(address) for address in addresses}
    steps = hist.history(hist.result_sets(store.applies(), mine, images), model, policy_of(madfile), metric)
    return [s for s in steps if s.apply_id == apply_id] if apply_id is not None else steps


def _metrics(every: list[Attempt], model: str) -> list[str]:
    return sorted({r.metric for a in every for r in a.perf if r.metric and (r.model == model
                                                                            or a.inputs.get("model") == model)})


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
