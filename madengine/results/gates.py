"""`expect:` gates (DESIGN §2): absolute bounds on what a job reports. Pure.

A gate names one metric and optional `min`/`max` bounds. It is met when the job reported that metric
and every figure of it is within the bounds; a job that reported no such figure (it failed, never ran,
or printed another metric) does not meet it: a CI gate that passes on a missing result checks nothing.
Apply records a job's verdict with its result and checks every selected job's latest result at its end.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from madengine.results.perfcsv import format_number  # as `results` and perf.csv show the figure: exact
from madengine.state.model import Attempt, PerfRow, Status

Better = Literal["higher", "lower"]


@dataclass(frozen=True)
class Gate:
    """One `expect:` entry as it applies to one job."""

    metric: str
    better: Better = "higher"
    min: float | None = None
    max: float | None = None
    where: str = ""  # `madfile.yaml:31:7`: the expect entry it comes from (relative to the project)

    def to_json(self) -> dict[str, Any]:
        return {"metric": self.metric, "better": self.better, "min": self.min, "max": self.max, "where": self.where}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Gate:
        better: Better = "lower" if data.get("better") == "lower" else "higher"
        return cls(metric=str(data["metric"]), better=better, min=_float(data.get("min")),
                   max=_float(data.get("max")), where=str(data.get("where") or ""))


@dataclass(frozen=True)
class Verdict:
    """Whether one job's result meets its gate, and if not, why."""

    address: str
    gate: Gate
    met: bool
    value: float | None = None  # the figure that decided: the first out of bounds, else the worst one
    reason: str = ""  # when unmet: `gflops 0.0091 is below min 1000000000`, `reported no gflops`

    def line(self) -> str:
        """`job:...: gflops 0.0091 is below min 1000000000 (expect in madfile.yaml:31:7)`."""
        where = f" (expect in {self.gate.where})" if self.gate.where else ""
        return f"{self.address}: {self.reason}{where}"

    def to_json(self) -> dict[str, Any]:
        return {"met": self.met, "value": self.value, "reason": self.reason, **self.gate.to_json()}

    @classmethod
    def from_json(cls, address: str, data: Mapping[str, Any]) -> Verdict:
        return cls(address=address, gate=Gate.from_json(data), met=bool(data.get("met")),
                   value=_float(data.get("value")), reason=str(data.get("reason") or ""))


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


def check_gates(gates: Mapping[str, Gate], latest: Mapping[str, Attempt]) -> list[Verdict]:
    """The verdict of every gated job on its latest result, by address."""
    out = []
    for address in sorted(gates):
        attempt = latest.get(address)
        out.append(judge_gate(address, gates[address], attempt.status if attempt else None,
                              attempt.perf if attempt else ()))
    return out


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


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
