"""The plan as people read it: one line per node, then the summary. A view, separate from the data."""

from __future__ import annotations

from madengine.plan.model import Action, Plan

VERB = {Action.BUILD: "build", Action.REBUILD: "rebuild", Action.PULL: "pull", Action.PUSH: "push", Action.RUN: "run",
        Action.RERUN: "rerun", Action.NOOP: "up to date"}
STYLE = {"+": "green", "~": "yellow", "=": "dim"}


def plan_lines(plan: Plan, show_unchanged: bool = True) -> list[tuple[str, str]]:
    """(style, text) per line: `+ build image:x@cpu (never built)`."""
    lines = []
    for c in plan.changes:
        if c.action is Action.NOOP and not show_unchanged:
            continue
        where = f" on {', '.join(c.targets)}" if c.kind == "image" and len(c.targets) > 1 else ""
        lines.append((STYLE[c.action.symbol], f"{c.action.symbol} {VERB[c.action]} {c.address}{where} ({c.reason})"))
    return lines


def render_text(plan: Plan, show_unchanged: bool = True) -> str:
    body = [text for _, text in plan_lines(plan, show_unchanged)]
    if not plan.has_changes:
        body.append("No changes: everything is up to date.")
    return "\n".join([*body, plan.summary()]) + "\n"
