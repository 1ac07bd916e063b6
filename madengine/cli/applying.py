"""The apply flow shared by `apply`, `run` and `build`: lock the workspace, plan (or take a saved plan),
confirm, apply with progress, summarize. Commands differ only in how they get there and what they
export afterwards (`after`, called with the store while the workspace is still locked)."""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import typer
from rich.console import Console
from rich.markup import escape

from madengine.apply.engine import Applier, ApplyOptions, ApplyResult
from madengine.cli import output
from madengine.cli.progress import RichReporter
from madengine.errors import UsageError
from madengine.pipeline import Realization, make_plan
from madengine.plan import planfile as plans
from madengine.plan.model import Plan
from madengine.plan.render import plan_lines
from madengine.state.lock import WorkspaceLock
from madengine.state.store import StateStore


@dataclass(frozen=True)
class ApplyRequest:
    saved: Plan | None = None
    replace: Sequence[str] = ()
    rerun_failed: bool = False
    yes: bool = False
    live_output: bool = False
    options: ApplyOptions = field(default_factory=ApplyOptions)


def apply_realization(r: Realization, request: ApplyRequest, command: str,
                      after: Callable[[StateStore, ApplyResult | None], None] | None = None) -> ApplyResult | None:
    """Plan and apply; None when there was nothing to do or the user said no. Raises on refusal."""
    console = output.console()
    result: ApplyResult | None = None
    with WorkspaceLock.for_store(r.state_path).acquire(command), StateStore.open(r.state_path) as store:
        if request.saved is not None:
            plans.check_current(request.saved, r.lock_hash, store.serial())
            the_plan, latest = request.saved, store.latest_attempts()
        else:
            the_plan, observed = make_plan(r, store, request.replace, request.rerun_failed)
            latest = observed.latest
            for style, text in plan_lines(the_plan, show_unchanged=False):
                console.print(f"[{style}]{escape(text)}[/]", soft_wrap=True)  # one line per node, as `plan`
            console.print(the_plan.summary())
            if the_plan.has_changes and not request.yes and not _confirmed(console):
                return None
        if not the_plan.has_changes:
            console.print("Nothing to do.")
        else:
            durations = {a: t.duration for a, t in latest.items() if t.duration}
            with RichReporter(console, live_output=request.live_output) as reporter:
                result = Applier(the_plan, r.lock, r.compiled(), store, r.backends, r.workspace,
                                 request.options, reporter, durations=durations).run()
            console.print(reporter.summary())
            counts = Counter(s.value for s in result.statuses.values())
            console.print(f"Apply {result.outcome.lower()}: " + ", ".join(f"{n} {s}" for s, n in counts.items()))
        if after is not None:
            after(store, result)
    return result


def _confirmed(console: Console) -> bool:
    if not sys.stdin.isatty():
        raise UsageError("apply needs a confirmation and stdin is not a terminal",
                         hint="pass --yes (or --auto-approve), or apply a saved plan file")
    if typer.confirm("Apply this plan?", default=False):
        return True
    console.print("Nothing applied.")
    return False


def exit_with(result: ApplyResult | None) -> None:
    if result is not None and result.exit_code:
        raise typer.Exit(int(result.exit_code))
