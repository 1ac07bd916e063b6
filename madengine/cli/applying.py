"""The apply flow shared by `apply`, `run` and `build`: lock the workspace, plan (or take a saved plan),
confirm, apply with progress, summarize. Commands differ only in how they get there and what they
export afterwards (`after`, called with the store while the workspace is still locked)."""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape

from madengine.apply.engine import Applier, ApplyOptions, ApplyResult
from madengine.cli import output
from madengine.cli.progress import RichReporter
from madengine.errors import ExitCode, UsageError
from madengine.pipeline import Realization, make_plan
from madengine.plan import planfile as plans
from madengine.plan.model import Plan
from madengine.plan.render import facts_notes, no_changes, plan_lines
from madengine.results.baseline import for_gates, judge_gates
from madengine.results.gates import Verdict, note_lines, summary, unmet_lines
from madengine.results.resultset import ResultSet
from madengine.state.lock import WorkspaceLock
from madengine.state.model import Attempt
from madengine.state.store import StateStore


@dataclass(frozen=True)
class ApplyRequest:
    saved: Plan | None = None
    replace: Sequence[str] = ()
    replace_reason: str | None = None  # why `replace` nodes are redone, when not --replace (run, build)
    rerun_failed: bool = False
    yes: bool = False
    live_output: bool = False
    options: ApplyOptions = field(default_factory=ApplyOptions)


@dataclass(frozen=True)
class Applied:
    """What an apply flow ended with: the apply (None when there was nothing to do or the user said no)
    and the `expect:` gates that the latest results of the selected jobs do not meet."""

    result: ApplyResult | None
    unmet: tuple[Verdict, ...] = ()

    @property
    def exit_code(self) -> ExitCode:
        # A failed, skipped or interrupted apply wins over an unmet gate (2, 3 or 130 over 6): a job that
        # did not run to the end is the first thing to fix, and its gate is unmet only because of it.
        code = self.result.exit_code if self.result is not None else ExitCode.OK
        return ExitCode.EXPECTATION if code is ExitCode.OK and self.unmet else code


def apply_realization(r: Realization, request: ApplyRequest, command: str,
                      after: Callable[[StateStore, ApplyResult | None], None] | None = None) -> Applied:
    """Plan and apply, then check the gates; raises on refusal."""
    console = output.console()
    if r.lock_note:  # the lock was refreshed for this apply: said on stderr, as `plan` says it
        typer.echo(r.lock_note, err=True)
    try:
        return _apply(r, request, command, console, after)
    finally:
        r.close_backends()  # every host's connection, once per command


def _apply(r: Realization, request: ApplyRequest, command: str, console: Console,
           after: Callable[[StateStore, ApplyResult | None], None] | None) -> Applied:
    result: ApplyResult | None = None
    unmet: tuple[Verdict, ...] = ()
    # The baselines the gates are against, read before anything runs: one missing or not this project's
    # stops the apply here, with nothing done (not after an hour of benchmarks).
    baselines = gate_baselines(r)
    if request.saved is not None:
        # A stale plan is refused before the lock and the store are opened for writing: a refused apply
        # creates neither (`--state new.db`). Checked again under the lock below, where it counts.
        with StateStore.open(r.state_path, readonly=True) as current:
            plans.check_current(request.saved, r.lock_hash, current.serial())
    with WorkspaceLock.for_store(r.state_path).acquire(command), StateStore.open(r.state_path) as store:
        if request.saved is not None:
            plans.check_current(request.saved, r.lock_hash, store.serial())
            the_plan, latest = request.saved, store.latest_attempts()
        else:
            the_plan, observed = make_plan(r, store, request.replace, request.rerun_failed, request.replace_reason)
            latest = observed.latest
            for note in facts_notes(observed):  # never fatal: said on stderr, as `plan` says it
                typer.echo(note, err=True)
            for style, text in plan_lines(the_plan, show_unchanged=False):
                console.print(f"[{style}]{escape(text)}[/]", soft_wrap=True)  # one line per node, as `plan`
            console.print(the_plan.summary())
            if the_plan.has_changes and not request.yes and not _confirmed(console):
                return Applied(None)
        if not the_plan.has_changes:  # in plan's words: what stays failed or running is said, not "done"
            console.print(no_changes(the_plan))
        else:
            durations = {a: t.duration for a, t in latest.items() if t.duration}
            with RichReporter(console, live_output=request.live_output) as reporter:
                result = Applier(the_plan, r.lock, r.compiled(), store, r.backends, r.workspace,
                                 request.options, reporter, durations=durations).run()
            console.print(reporter.summary())
            counts = Counter(s.value for s in result.statuses.values())
            not_started = _not_started(the_plan, result, console)
            if not_started:
                counts["NOT STARTED"] = not_started
            console.print(f"Apply {result.outcome.lower()}: " + ", ".join(f"{n} {s}" for s, n in counts.items()))
        # The results as they are now: re-read only if this apply recorded any.
        unmet = _check_gates(console, r, latest if result is None else store.latest_attempts(), store, baselines)
        if after is not None:
            after(store, result)
    return Applied(result, unmet)


def gate_baselines(r: Realization) -> dict[str, ResultSet]:
    """The baselines that the selected jobs' gates measure a tolerance against, by name."""
    gates = r.gates()
    if not any(g.baseline and g.tolerance is not None for g in gates.values()):
        return {}
    return for_gates(gates, r.madfile.parent, r.project_name())


def _check_gates(console: Console, r: Realization, latest: Mapping[str, Attempt],
                 store: StateStore, baselines: Mapping[str, ResultSet]) -> tuple[Verdict, ...]:
    """The gates of every selected job on its latest result, up to date or just run: a no-op apply over
    results that fail a gate still fails it (what a CI gate needs). Prints one line per unmet gate.

    A verdict that differs from the one recorded with the attempt (a gate edited since it ran) replaces
    it, so that `results` shows what this apply judged, not what an earlier one did."""
    gates = r.gates()
    if not gates:
        return ()
    verdicts = judge_gates(gates, latest, store.attempts, baselines)
    changed: dict[int, dict[str, Any]] = {}
    for verdict in verdicts:
        attempt = latest.get(verdict.address)
        if attempt is not None and attempt.gate != verdict.to_json():
            changed[attempt.id] = verdict.to_json()
    store.set_gates(changed)
    unmet = tuple(v for v in verdicts if not v.met)
    console.print(f"Expect {summary(verdicts)}", style="red" if unmet else "green")
    for line in unmet_lines(unmet):
        console.print(f"[red]{escape(line)}[/]", soft_wrap=True)
    for line in note_lines(verdicts):  # a tolerance with nothing to compare with yet: met, and said
        console.print(escape(line), soft_wrap=True)
    return unmet


_NAMED = 20  # not-started nodes named in the summary; `madengine plan` lists them all


def _not_started(plan: Plan, result: ApplyResult, console: Console) -> int:
    """Name the planned nodes that apply never started (it stopped after a failure, or was interrupted):
    they are in no table row and no state record, and would otherwise go unmentioned."""
    missing = [c.address for c in plan.changes if c.action.changes and c.address not in result.statuses]
    if missing:
        why = "interrupted" if result.interrupted else "apply stopped at the first failure; --keep-going runs them"
        console.print(f"Not started ({why}):", soft_wrap=True)
        for address in missing[:_NAMED]:
            console.print(f"  {escape(address)}", soft_wrap=True)
        if len(missing) > _NAMED:
            console.print(f"  … and {len(missing) - _NAMED} more (`madengine plan` lists them)")
    return len(missing)


def _confirmed(console: Console) -> bool:
    if not sys.stdin.isatty():
        raise UsageError("apply needs a confirmation and stdin is not a terminal",
                         hint="pass --yes (or --auto-approve), or apply a saved plan file")
    if _ask_yes_no("Apply this plan?"):
        return True
    console.print("Nothing applied.")
    return False


def _ask_yes_no(question: str) -> bool:
    """`typer.confirm(question, default=False)`, read so that a signal is never missed. `input()` blocks in a
    read(2) that a SIGTERM arriving just before it does not interrupt: Python's handler only runs when the
    read returns, so the process waited for an Enter that never came (CI saw it hang). A select with a short
    timeout returns to Python, which runs the handler (KeyboardInterrupt: exit 130, the lock released)."""
    import select

    stdin = sys.stdin
    while True:
        typer.echo(f"{question} [y/N]: ", nl=False)
        while not select.select([stdin], [], [], 0.2)[0]:
            pass  # a terminal reads a line at a time: readable means a whole answer (or EOF) is there
        answer = stdin.readline()
        if not answer:  # end of input: as click says it
            raise typer.Abort()
        answer = answer.strip().lower()
        if answer in ("", "n", "no"):
            return False
        if answer in ("y", "yes"):
            return True
        typer.echo("Error: invalid input")


def exit_with(applied: Applied) -> None:
    if applied.exit_code:
        raise typer.Exit(int(applied.exit_code))
