"""The plan as people read it: one line per node, then the summary. A view, separate from the data."""

from __future__ import annotations

from madengine.plan.model import Action, Plan
from madengine.state.model import Observed

VERB = {Action.BUILD: "build", Action.REBUILD: "rebuild", Action.PULL: "pull", Action.LOAD: "load",
        Action.PUSH: "push", Action.RUN: "run", Action.RERUN: "rerun", Action.NOOP: "up to date",
        Action.FAILED: "failed", Action.WAIT: "running", Action.AWAIT: "wait", Action.SKIP: "skip",
        Action.SKIPPED: "skipped"}
STYLE = {"+": "green", "~": "yellow", "=": "dim", "!": "red", "*": "cyan", "-": "magenta"}


def plan_lines(plan: Plan, show_unchanged: bool = True) -> list[tuple[str, str]]:
    """(style, text) per line: `+ build image:x@cpu (never built)`; `+ load image:x@cpu → lab/node2 (...)`
    where a change acts on some hosts of a many-host target (`hosts` are named only for those)."""
    lines = []
    for c in plan.changes:
        if c.action is Action.NOOP and not show_unchanged:
            continue
        where = f" on {', '.join(c.targets)}" if c.kind == "image" and len(c.targets) > 1 else ""
        if c.hosts and c.action.changes:
            where = f" → {', '.join(c.hosts)}"
        lines.append((STYLE[c.action.symbol], f"{c.action.symbol} {VERB[c.action]} {c.address}{where} ({c.reason})"))
    return lines


def render_text(plan: Plan, show_unchanged: bool = True) -> str:
    body = [text for _, text in plan_lines(plan, show_unchanged)]
    if not plan.has_changes:
        body.append(no_changes(plan))
    return "\n".join([*body, plan.summary()]) + "\n"


def no_changes(plan: Plan) -> str:
    """What a plan without changes says: up to date, or what stays failed or running (for `plan` and `apply`)."""
    n = plan.counts()
    skipped = f"; {n['skipped']} skipped (skip_gpu_arch)" if n["skipped"] else ""
    if not n["failed"] and not n["running"]:
        return f"No changes: everything is up to date{skipped}."
    notes = []
    if n["failed"]:
        notes.append(f"{n['failed']} failed job(s) stay failed until rerun with --rerun-failed")
    if n["running"]:
        notes.append(f"{n['running']} job(s) are running in another apply")
    return "No changes to apply: " + "; ".join(notes) + skipped + "."


def facts_notes(observed: Observed) -> list[str]:
    """One line per target whose images could not be observed (no host answered), then one per host whose
    facts could not be (a whole target when it could not even name its hosts): its jobs are planned as
    usual, their results there not compared. For stderr."""
    return [*(f"images of {target} not observed ({why}): planned as recorded; its jobs fail at apply if its "
              "hosts still do not answer" for target, why in sorted(observed.images_unknown.items())),
            *(f"facts of {target}{'/' + host if host else ''} unknown ({why}): its jobs are planned without them"
              for (target, host), why in sorted(observed.facts_unknown.items()))]
