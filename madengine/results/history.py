"""A model's figures across applies (`results --history MODEL`), each step compared with the one before it
as `compare` does, with the inputs that changed at that step. Pure: the CLI reads the store."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from madengine.results.compare import Policy, Row, changed_inputs, compare, printable
from madengine.results.perfcsv import format_number
from madengine.results.resultset import ResultSet, SeriesResult, from_apply
from madengine.state.model import ApplyRecord, Attempt, ImageRecord, Status

HEADER = ("APPLY", "STARTED", "JOB", "METRIC", "MEDIAN", "CHANGE", "VERDICT", "CHANGED INPUTS")


@dataclass(frozen=True)
class Step:
    """One figure of one job as one apply measured it, against the job's previous successful result."""

    apply_id: int
    created: str | None
    row: Row  # `a`: the previous result (None at the first step), `b`: this one

    def to_json(self) -> dict[str, Any]:
        figure = self.row.b
        return {"apply_id": self.apply_id, "created": self.created, "series": self.row.key, "model": self.row.model,
                "metric": self.row.metric, "median": figure.median if figure else None,
                "values": list(figure.values) if figure else [], "spread": figure.spread if figure else None,
                "status": self.row.b_status.value if self.row.b_status else None, "change": self.row.change,
                "verdict": self.verdict, "better": self.row.better, "direction_from": self.row.direction_from,
                "changed": list(self.row.changed), "message": self.row.message}

    @property
    def verdict(self) -> str:
        """The row's verdict, `first` for a job's first result (`new` in a comparison)."""
        return "first" if self.row.a is None and self.row.verdict == "new" else self.row.verdict

    def cells(self) -> tuple[str, ...]:
        row = self.row
        metric = row.metric if row.model == _head(row.key) else f"{row.model} {row.metric}".strip()
        median = format_number(row.b.median) if row.b else "-"
        if row.b is not None and len(row.b.values) > 1:
            median += (f" {row.b.spread_text()}" if row.b.spread else "") + f" (n={len(row.b.values)})"
        verdict = self.verdict
        note = ", ".join(row.changed)
        if row.verdict == "failed":
            status = row.b_status.value if row.b_status else "FAILED"
            note = f"{status}: {row.message}" if row.message else status
        return tuple(map(printable, (str(self.apply_id), (self.created or "")[:10], row.key, metric or "(no result)",
                                     median, row.change_text(), verdict, note)))


def _head(key: str) -> str:
    return key.removeprefix("job:").split("@", 1)[0].split("[", 1)[0].split("~", 1)[0]


def result_sets(applies: Iterable[ApplyRecord], attempts: Iterable[Attempt],
                images: Mapping[str, Sequence[ImageRecord]] | None = None) -> list[ResultSet]:
    """What each apply ran (only that: a step is a measurement), oldest first, applies that ran nothing left out."""
    by_apply: dict[int, list[Attempt]] = {}
    for attempt in attempts:
        by_apply.setdefault(attempt.apply_id, []).append(attempt)
    return [from_apply(apply, by_apply[apply.id], images, only_ran=True)
            for apply in sorted(applies, key=lambda a: a.id) if apply.id in by_apply]


def _of_model(series: SeriesResult, model: str) -> SeriesResult | None:
    """The series restricted to `model`: a job of that model, or its multiple_results row of that name."""
    if series.model == model:
        return series
    rows = {k: f for k, f in series.figures.items() if k[0] == model}
    return replace(series, figures=rows) if rows else None


def history(sets: Sequence[ResultSet], model: str, policy: Policy | None = None,
            metric: str | None = None) -> list[Step]:
    """Every step of `model`'s figures (of `metric` only, if given) across `sets` (oldest first): each
    compared with the same job's previous successful result, and the inputs that changed since."""
    policy = policy or Policy()
    previous: dict[str, SeriesResult] = {}
    steps: list[Step] = []
    for rs in sets:
        for key in sorted(rs.series):
            series = _of_model(rs.series[key], model)
            if series is None:
                continue
            before = previous.get(key)
            rows = compare(_alone(before), _alone(series), policy, metric=metric).rows
            changed = changed_inputs(before, series) if before is not None else ()
            for row in rows:
                steps.append(Step(rs.apply_id or 0, rs.created, replace(row, changed=changed)))
            if series.status is Status.SUCCESS and series.figures:
                previous[key] = series
    return steps


def _alone(series: SeriesResult | None) -> ResultSet:
    return ResultSet(label="", kind="apply", project=None, lock_hash=None, apply_id=None, created=None,
                     series={series.key: series} if series is not None else {})


def summary(steps: Sequence[Step], model: str) -> str:
    applies = len({s.apply_id for s in steps})
    moved = sum(s.row.verdict in ("improved", "regressed") for s in steps)
    failed = sum(s.row.verdict == "failed" for s in steps)
    parts = [f"{applies} appl{'y' if applies == 1 else 'ies'} of {model}"]
    if moved:
        parts.append(f"{moved} change{'s' if moved != 1 else ''} beyond noise")
    if failed:
        parts.append(f"{failed} failed")
    return ", ".join(parts)
