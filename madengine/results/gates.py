"""`expect:` gates (DESIGN §2): bounds on what a job reports. Pure.

A gate names one metric, optional absolute `min`/`max` bounds and an optional `tolerance` against a
reference: a baseline (`baseline: NAME`) or else the job's previous result. It is met when the job
reported that metric, every figure of it is within the bounds, and the median of the job's repeats is
not worse than the reference's median by more than the tolerance, in the gate's direction.

A job that reported no such figure (it failed, never ran, or printed another metric) does not meet it:
a CI gate that passes on a missing result checks nothing. A job with no reference (its first run, a
job the baseline does not have) does meet its tolerance, with a note: there is nothing to regress
from, and a first run must not fail CI; its absolute bounds, if any, still apply.

Apply records a job's verdict with its result (bounds only: the reference is known at the end) and
checks every selected job's latest result at its end; `madengine check` does the same on any apply.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from madengine.madfile.percent import format_percent
from madengine.results.perfcsv import format_number  # as `results` and perf.csv show the figure: exact
from madengine.results.resultset import median, series_key
from madengine.state.model import Attempt, PerfRow, Status

Better = Literal["higher", "lower"]


@dataclass(frozen=True)
class Reference:
    """What a tolerance is measured against: a median, and where it came from (`baseline main`, `apply 3`)."""

    median: float
    source: str


# (series key, row model, metric) -> its reference. Row model: `PerfRow.model` (multiple_results rows).
References = Mapping[tuple[str, str, str], Reference]


@dataclass(frozen=True)
class Gate:
    """One `expect:` entry as it applies to one job."""

    metric: str
    better: Better = "higher"
    min: float | None = None
    max: float | None = None
    where: str = ""  # `madfile.yaml:31:7`: the expect entry it comes from (relative to the project)
    tolerance: float | None = None  # a fraction (5% -> 0.05): how much worse than the reference is allowed
    baseline: str | None = None  # the baseline the tolerance is against; None: the job's previous result

    def to_json(self) -> dict[str, Any]:
        return {"metric": self.metric, "better": self.better, "min": self.min, "max": self.max, "where": self.where,
                "tolerance": self.tolerance, "baseline": self.baseline}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Gate:
        better: Better = "lower" if data.get("better") == "lower" else "higher"
        baseline = data.get("baseline")
        return cls(metric=str(data["metric"]), better=better, min=_float(data.get("min")),
                   max=_float(data.get("max")), where=str(data.get("where") or ""),
                   tolerance=_float(data.get("tolerance")), baseline=baseline if isinstance(baseline, str) else None)

    def reference_name(self) -> str:
        """What the tolerance is against, in words: `baseline main`, `the previous result`."""
        return f"baseline {self.baseline}" if self.baseline else "the previous result"


@dataclass(frozen=True)
class Verdict:
    """Whether one job's result meets its gate, and if not, why."""

    address: str
    gate: Gate
    met: bool
    value: float | None = None  # the figure that decided: the first out of bounds, else the worst one
    reason: str = ""  # when unmet: `gflops 0.0091 is below min 1000000000`, `reported no gflops`
    # A tolerance's judgement: the reference median and the bound it gave, and the note of a met gate
    # that had nothing to compare with (`no reference: ...`).
    reference: Reference | None = None
    bound: float | None = None
    repeats: int = 0  # how many repeats' median `value` is (0: one figure of one attempt)
    note: str = ""

    @property
    def subject(self) -> str:
        """Who the verdict is about: the job, or (a median over repeats) the job across its repeats."""
        return series_key(self.address) if self.repeats > 1 else self.address

    def line(self) -> str:
        """`job:...: gflops 0.0091 is below min 1000000000 (expect in madfile.yaml:31:7)`."""
        where = f" (expect in {self.gate.where})" if self.gate.where else ""
        return f"{self.subject}: {self.reason or self.note}{where}"

    def detail(self) -> str:
        """What was judged, met or not: the reason of an unmet gate; for a met one its figure and bounds
        (`mflops 9 (median of 3 repeats) is within 8.55 = apply 1's 9 - 5%`), and its note."""
        if not self.met:
            return self.reason
        g = self.gate
        parts = []
        if g.min is not None:
            parts.append(f"min {format_number(g.min)}")
        if g.max is not None:
            parts.append(f"max {format_number(g.max)}")
        if self.reference is not None and self.bound is not None and g.tolerance is not None:
            sign = "-" if g.better == "higher" else "+"
            parts.append(f"{_bound_text(self.bound, self.value or 0.0)} = {self.reference.source}'s "
                         f"{format_number(self.reference.median)} {sign} {format_percent(g.tolerance)}")
        of = f" (median of {self.repeats} repeats)" if self.repeats > 1 else ""
        text = f"{g.metric} {format_number(self.value)}{of}" + (f" is within {', '.join(parts)}" if parts else "")
        return text + (f"; {self.note}" if self.note else "")

    def to_json(self) -> dict[str, Any]:
        ref = self.reference
        return {"met": self.met, "value": self.value, "reason": self.reason, **self.gate.to_json(),
                "bound": self.bound, "reference": ref.median if ref else None,
                "reference_from": ref.source if ref else None, "repeats": self.repeats, "note": self.note}

    @classmethod
    def from_json(cls, address: str, data: Mapping[str, Any]) -> Verdict:
        median, source = _float(data.get("reference")), data.get("reference_from")
        reference = Reference(median, source) if median is not None and isinstance(source, str) else None
        repeats = data.get("repeats")
        return cls(address=address, gate=Gate.from_json(data), met=bool(data.get("met")),
                   value=_float(data.get("value")), reason=str(data.get("reason") or ""), reference=reference,
                   bound=_float(data.get("bound")), repeats=repeats if type(repeats) is int else 0,
                   note=str(data.get("note") or ""))


def judge_gate(address: str, gate: Gate, status: Status | None, perf: Sequence[PerfRow]) -> Verdict:
    """The verdict of `gate` on a job result (`status` None: the job has no result at all)."""
    figures = [(row.model, row.performance) for row in perf
               if row.metric == gate.metric and row.performance is not None and math.isfinite(row.performance)]
    if not figures:
        return Verdict(address, gate, met=False, reason=f"reported no {gate.metric}{_why_none(gate, status, perf)}")
    named = len(figures) > 1  # multiple_results rows: say which row is out of bounds
    for name, value in figures:
        label = f"{gate.metric} of {name}" if named else gate.metric
        if gate.min is not None and value < gate.min:
            return Verdict(address, gate, met=False, value=value,
                           reason=f"{label} {format_number(value)} is below min {format_number(gate.min)}")
        if gate.max is not None and value > gate.max:
            return Verdict(address, gate, met=False, value=value,
                           reason=f"{label} {format_number(value)} is above max {format_number(gate.max)}")
    values = [v for _, v in figures]
    return Verdict(address, gate, met=True, value=min(values) if gate.better == "higher" else max(values))


def judge_tolerance(address: str, gate: Gate, current: Mapping[str, Sequence[float]],
                    references: Mapping[str, Reference]) -> Verdict:
    """The verdict of `gate`'s tolerance on a job's figures: row model -> this result's values of the
    metric (one per repeat), row model -> its reference. Each row's median against its reference's
    median; the first row worse than its bound decides. Rows with no reference are met, with a note."""
    assert gate.tolerance is not None
    named = len(current) > 1  # multiple_results rows: say which row
    closest: tuple[float, Verdict] | None = None  # the met row nearest its bound, with its slack
    unreferenced = []
    for row in sorted(current):
        values = current[row]
        if not values:
            continue
        value = median(values)
        ref = references.get(row)
        if ref is None:
            unreferenced.append(row)
            continue
        margin = abs(ref.median) * gate.tolerance
        higher = gate.better == "higher"
        bound = ref.median - margin if higher else ref.median + margin
        slack = value - bound if higher else bound - value
        label = f"{gate.metric} of {row}" if named else gate.metric
        of = f" (median of {len(values)} repeats)" if len(values) > 1 else ""
        verdict = Verdict(address, gate, met=slack >= 0, value=value, reference=ref, bound=bound,
                          repeats=len(values))
        if slack < 0:
            side, sign = ("below", "-") if higher else ("above", "+")
            return replace(verdict, reason=f"{label} {format_number(value)}{of} is {side} "
                                           f"{_bound_text(bound, value)} = {ref.source}'s "
                                           f"{format_number(ref.median)} {sign} {format_percent(gate.tolerance)}")
        if closest is None or slack < closest[0]:
            closest = (slack, verdict)
    if closest is not None:
        verdict = closest[1]
        if unreferenced:
            return replace(verdict, note=f"no reference for {', '.join(unreferenced)} in "
                                         f"{verdict.reference.source if verdict.reference else ''}")
        return verdict
    repeats = max((len(v) for v in current.values()), default=0)
    values = [v for vs in current.values() for v in vs]
    # A job new to the baseline, or in it without this metric (it failed then); a first run.
    why = f"baseline {gate.baseline} has no {gate.metric} of this job" if gate.baseline else \
        f"no earlier result of this job has {gate.metric}"
    return Verdict(address, gate, met=True, value=median(values) if values else None, repeats=repeats,
                   note=f"no reference for the tolerance: {why} (met)")


def check_gates(gates: Mapping[str, Gate], latest: Mapping[str, Attempt],
                references: References | None = None) -> list[Verdict]:
    """The verdict of every gated job on its latest result, by address. A gate with a tolerance judges
    the median of the latest results of the job's repeats (every repeat's verdict is that judgement)
    against `references`; the absolute bounds of each result are judged first."""
    refs = references or {}
    current = _series_figures(gates, latest)
    out = []
    for address in sorted(gates):
        gate, attempt = gates[address], latest.get(address)
        verdict = judge_gate(address, gate, attempt.status if attempt else None, attempt.perf if attempt else ())
        if verdict.met and gate.tolerance is not None:
            key = series_key(address)
            figures = current.get(key, {})
            verdict = judge_tolerance(address, gate, figures,
                                      {row: ref for row in figures if (ref := refs.get((key, row, gate.metric)))})
        out.append(verdict)
    return out


def _series_figures(gates: Mapping[str, Gate], latest: Mapping[str, Attempt]) -> dict[str, dict[str, list[float]]]:
    """Series key -> row model -> the finite figures of the gate's metric in the latest results of the
    series' repeats, for the gates with a tolerance."""
    out: dict[str, dict[str, list[float]]] = {}
    for address, gate in gates.items():
        attempt = latest.get(address)
        if gate.tolerance is None or attempt is None:
            continue
        rows = out.setdefault(series_key(address), {})
        for model, value in _measured(attempt, gate.metric):
            rows.setdefault(model, []).append(value)
    return out


def _measured(attempt: Attempt, metric: str) -> list[tuple[str, float]]:
    """(row model, value) of `metric` in a successful attempt's successful rows: what a tolerance compares
    (as a result set counts figures: a failed run's numbers are not results)."""
    if attempt.status is not Status.SUCCESS:
        return []
    return [(row.model, row.performance) for row in attempt.perf if row.metric == metric and row.status is
            Status.SUCCESS and row.performance is not None and math.isfinite(row.performance)]


def previous_references(gates: Mapping[str, Gate], latest: Mapping[str, Attempt],
                        history: Iterable[Attempt]) -> dict[tuple[str, str, str], Reference]:
    """The references of the tolerance gates that have no baseline: each job's previous result, i.e.
    its figures in the latest apply before the one its oldest current result comes from (so that a
    no-op apply judges what the last one judged, and a partial rerun is measured against what came
    before the whole current set). The median over that apply's repeats of the job."""
    wanted: dict[str, tuple[str, int]] = {}  # series key -> (metric, cutoff apply id)
    for address, gate in gates.items():
        if gate.tolerance is None or gate.baseline:
            continue
        attempt = latest.get(address)
        if attempt is None:
            continue
        key = series_key(address)
        metric, cutoff = wanted.get(key, (gate.metric, attempt.apply_id))
        wanted[key] = (metric, min(cutoff, attempt.apply_id))
    # series -> (the latest apply before its cutoff that measured the metric, row model -> its figures).
    # Newest first: older applies of a series found already are skipped without being read.
    found: dict[str, tuple[int, dict[str, list[float]]]] = {}
    keys: dict[str, str] = {}  # address -> series key: a store's history repeats each address per apply
    for attempt in reversed(list(history)):
        key = keys.get(attempt.address) or keys.setdefault(attempt.address, series_key(attempt.address))
        want = wanted.get(key)
        if want is None or attempt.apply_id >= want[1]:
            continue
        best = found.get(key)
        if best is not None and attempt.apply_id < best[0]:
            continue
        measured = _measured(attempt, want[0])
        if not measured:
            continue
        if best is None or attempt.apply_id > best[0]:
            best = found[key] = (attempt.apply_id, {})
        for model, value in measured:
            best[1].setdefault(model, []).append(value)
    return {(key, model, wanted[key][0]): Reference(median(values), f"apply {apply_id}")
            for key, (apply_id, rows) in found.items() for model, values in rows.items()}


def unmet_lines(verdicts: Sequence[Verdict]) -> list[str]:
    """One line per unmet gate; the repeats of a job judged together (their median) give one line."""
    return list(dict.fromkeys(v.line() for v in verdicts if not v.met))


def note_lines(verdicts: Sequence[Verdict]) -> list[str]:
    """One line per met gate with a note (a tolerance with no reference yet), once per job."""
    return list(dict.fromkeys(v.line() for v in verdicts if v.met and v.note))


def distinct(verdicts: Sequence[Verdict]) -> list[Verdict]:
    """The verdicts as said to a user: the repeats of a job judged together (their median), once."""
    seen: dict[tuple[str, str], Verdict] = {}
    for v in verdicts:
        seen.setdefault((v.subject, v.detail()), v)
    return list(seen.values())


def summary(verdicts: Sequence[Verdict]) -> str:
    """The gates' count, as every command says it: `gates: 4 met, 1 unmet` (`gates: 4 met` when all are)."""
    unmet = sum(not v.met for v in verdicts)
    return f"gates: {len(verdicts) - unmet} met" + (f", {unmet} unmet" if unmet else "")


def _why_none(gate: Gate, status: Status | None, perf: Sequence[PerfRow]) -> str:
    if status is None:
        return " (it has no result: it never ran)"
    if status is not Status.SUCCESS:
        return f" (its latest attempt is {status.value})"
    if any(row.metric == gate.metric for row in perf):
        return " value (not a finite number)"
    metrics = sorted({row.metric for row in perf if row.metric})
    return f" (it reported {', '.join(metrics)})" if metrics else ""


def _bound_text(bound: float, value: float) -> str:
    """A bound as text: short (`95`, not `95.00000000000001`), unless the short form would read as the
    value or on its other side (`1.2345649 is below 1.23456`): then exactly."""
    short = f"{bound:.6g}"
    rounded = float(short)
    if "e" in short or short == format_number(value) or (rounded < value) != (bound < value) \
            or (rounded > value) != (bound > value):
        return format_number(bound)
    return short


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
