"""`madengine check [APPLY]`: judge the madfile's `expect:` gates on recorded results, running nothing."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from operator import attrgetter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from madengine.cli.options import ChdirOption, FileOption, JsonOption, StateOption

if TYPE_CHECKING:
    from madengine.state.location import StateLocation
    from madengine.state.model import Attempt


def register(app: typer.Typer) -> None:
    app.command("check")(check)


def check(
    apply_ref: str = typer.Argument("latest", metavar="APPLY",
                                    help="The apply whose results to judge: an id, `latest` (default) or "
                                         "`previous` (the applies that recorded results)."),
    file: Path | None = FileOption,
    chdir: Path | None = ChdirOption,
    as_json: bool = JsonOption,
    state: str | None = StateOption,
) -> None:
    """Judge the madfile's expect: gates on the results as they stood after an apply (exit 6 if any is unmet).

    The same verdicts apply gives at its end: each job's latest result up to that apply, a tolerance
    against its baseline or the job's result from an earlier apply. Nothing runs and nothing is recorded."""
    import sys

    from madengine.cli import output
    from madengine.cli.options import madfile_path, state_db
    from madengine.errors import ExitCode
    from madengine.pipeline import load_project, project_gates
    from madengine.results.baseline import for_gates, judge_gates
    from madengine.results.gates import distinct, summary

    path = madfile_path(file, chdir)
    db = state_db(file, chdir, state)
    loaded, project = load_project(path)
    gates = project_gates(project)
    baselines = for_gates(gates, loaded.root, project.name)  # a missing one is the madfile's error first
    apply_id, attempts = _results(db, apply_ref)
    latest = _latest(attempts, gates)
    verdicts = judge_gates(gates, latest, lambda: attempts, baselines)
    unmet = [v for v in verdicts if not v.met]
    if as_json:
        output.print_json({"apply_id": apply_id, "met": len(verdicts) - len(unmet), "unmet": len(unmet),
                           "verdicts": [{"address": v.address, **v.to_json()} for v in verdicts]})
    elif not gates:
        sys.stdout.write(f"{loaded.display_path} has no expect: gates (apply {apply_id})\n")
    else:
        shown = distinct(verdicts)
        sys.stdout.write(output.columns(("GATE", "JOB", "RESULT", "EXPECT"),
                                        [("met" if v.met else "UNMET", v.subject, v.detail(), v.gate.where)
                                         for v in shown]))
        sys.stdout.write(f"{summary(verdicts)} (results of apply {apply_id})\n")
        for v in shown:
            if not v.met:
                sys.stderr.write(v.line() + "\n")
    if unmet:
        raise typer.Exit(int(ExitCode.EXPECTATION))


def _results(db: StateLocation, ref: str) -> tuple[int, list[Attempt]]:
    """The apply `ref` names and every attempt recorded up to it (its own and earlier applies')."""
    from madengine.errors import UsageError
    from madengine.results.resultset import has_results
    from madengine.state.store import StateStore

    if not (ref in ("latest", "previous") or ref.isdigit()):
        raise UsageError(f"{ref[:40]!r} is not an apply", hint="name an apply id, `latest` or `previous`")
    if not db.exists():
        raise UsageError("no apply has run yet", hint="run `madengine apply` first")
    with StateStore.open(db, readonly=True) as store:
        applies = sorted(a.id for a in store.applies())
        attempts = store.attempts()
    if ref.isdigit():
        wanted = int(ref)
        if wanted not in applies:
            span = f"applies are {applies[0]}..{applies[-1]}" if applies else "no apply has run yet"
            raise UsageError(f"apply {ref}: no such apply ({span})", hint="`madengine results --json` lists them")
    else:
        by_apply: dict[int, list[Attempt]] = {}
        for attempt in attempts:
            by_apply.setdefault(attempt.apply_id, []).append(attempt)
        with_results = [i for i in reversed(applies) if has_results(by_apply.get(i, ()))]
        index = 0 if ref == "latest" else 1
        if len(with_results) <= index:
            have = "no apply has recorded results yet" if not with_results else \
                f"only apply {with_results[0]} has recorded results"
            raise UsageError(f"{ref}: {have}", hint="run `madengine apply`")
        wanted = with_results[index]
    return wanted, [a for a in attempts if a.apply_id <= wanted]


def _latest(attempts: Iterable[Attempt], gates: Mapping[str, Any]) -> dict[str, Attempt]:
    """Each gated job's latest attempt among `attempts` (as `StateStore.latest_attempts` picks it)."""
    out: dict[str, Attempt] = {}
    for attempt in sorted((a for a in attempts if a.address in gates), key=attrgetter("chronology")):
        out[attempt.address] = attempt
    return out
