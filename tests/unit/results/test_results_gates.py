"""`expect:` gates judged on results (results/gates.py): pure, so every case is a value in, a verdict out."""

from __future__ import annotations

import pytest

from madengine.results.gates import Gate, Verdict, check_gates, judge_gate, summary
from madengine.results.perfcsv import format_number
from madengine.state.model import Attempt, PerfRow, Status

JOB = "job:matmul[size=256]@cpu/here#1"
WHERE = "madfile.yaml:31:7"


def gate(**bounds: float) -> Gate:
    return Gate(metric="gflops", where=WHERE, **bounds)  # type: ignore[arg-type]


def rows(*values: float | None, metric: str = "gflops") -> tuple[PerfRow, ...]:
    return tuple(PerfRow("matmul", v, metric) for v in values)


def test_the_line_names_job_metric_value_bound_and_where() -> None:
    verdict = judge_gate(JOB, gate(min=1e9), Status.SUCCESS, rows(9.1e-3))
    assert not verdict.met and verdict.value == 9.1e-3
    assert verdict.line() == f"{JOB}: gflops 0.0091 is below min 1000000000 (expect in {WHERE})"


@pytest.mark.parametrize(("bounds", "value", "reason"), [
    ({"min": 10.0}, 9.0, "gflops 9 is below min 10"),
    ({"max": 5.0}, 9.0, "gflops 9 is above max 5"),
    ({"min": 1.0, "max": 5.0}, 9.0, "gflops 9 is above max 5"),
    ({"min": 100.0}, 99.9999999, "gflops 99.9999999 is below min 100"),  # never "100 is below min 100"
])
def test_out_of_bounds(bounds: dict[str, float], value: float, reason: str) -> None:
    verdict = judge_gate(JOB, gate(**bounds), Status.SUCCESS, rows(value))
    assert (verdict.met, verdict.reason) == (False, reason)


@pytest.mark.parametrize("bounds", [{}, {"min": 9.0}, {"max": 9.0}, {"min": 1.0, "max": 10.0}])
def test_within_bounds_bounds_are_inclusive(bounds: dict[str, float]) -> None:
    verdict = judge_gate(JOB, gate(**bounds), Status.SUCCESS, rows(9.0))
    assert verdict == Verdict(JOB, gate(**bounds), met=True, value=9.0)


@pytest.mark.parametrize(("status", "perf", "reason"), [
    (Status.SUCCESS, rows(9.0, metric="mflops"), "reported no gflops (it reported mflops)"),
    (Status.SUCCESS, rows(None), "reported no gflops value (not a finite number)"),
    (Status.SUCCESS, rows(float("nan")), "reported no gflops value (not a finite number)"),
    (Status.SUCCESS, (), "reported no gflops"),
    (Status.FAILURE, (), "reported no gflops (its latest attempt is FAILURE)"),
    (Status.SKIPPED, (), "reported no gflops (its latest attempt is SKIPPED)"),
    (None, (), "reported no gflops (it has no result: it never ran)"),
])
def test_a_missing_metric_is_unmet_never_passed(status: Status | None, perf: tuple[PerfRow, ...],
                                                reason: str) -> None:
    verdict = judge_gate(JOB, gate(), status, perf)
    assert (verdict.met, verdict.value, verdict.reason) == (False, None, reason)


def test_every_row_of_multiple_results_is_checked_and_the_failing_one_named() -> None:
    perf = (PerfRow("m_bs1", 50.0, "gflops"), PerfRow("m_bs8", 5.0, "gflops"), PerfRow("m_x", 1.0, "tps"))
    verdict = judge_gate(JOB, gate(min=10.0), Status.SUCCESS, perf)
    assert (verdict.met, verdict.reason) == (False, "gflops of m_bs8 5 is below min 10")
    # Met: the verdict keeps the worst figure, by the gate's direction.
    assert judge_gate(JOB, gate(min=1.0), Status.SUCCESS, perf).value == 5.0
    lower = Gate(metric="gflops", better="lower", max=100.0)
    assert judge_gate(JOB, lower, Status.SUCCESS, perf).value == 50.0


def test_check_gates_covers_every_gated_job_with_or_without_a_result() -> None:
    attempt = Attempt(id=1, apply_id=1, address=JOB, node_hash="h", status=Status.SUCCESS,
                      started_at="2026-12-01T00:00:00Z", perf=rows(20.0))
    other = "job:matmul[size=512]@cpu/here#1"
    verdicts = check_gates({other: gate(min=10.0), JOB: gate(min=10.0)}, {JOB: attempt})
    assert [(v.address, v.met) for v in verdicts] == [(JOB, True), (other, False)]


def test_verdicts_round_trip_through_json() -> None:
    verdict = judge_gate(JOB, Gate("gflops", "lower", 1.0, 2.0, WHERE), Status.SUCCESS, rows(3.0))
    assert Verdict.from_json(JOB, verdict.to_json()) == verdict


@pytest.mark.parametrize(("value", "bound", "reason"), [
    (123456.789, 1e9, "gflops 123456.789 is below min 1000000000"),
    (9.1e-5, 1.0, "gflops 9.1e-05 is below min 1"),
    (99.99999999, 100.0, "gflops 99.99999999 is below min 100")])  # never rounded to read as its bound
def test_a_figure_reads_as_results_shows_it_exactly(value: float, bound: float, reason: str) -> None:
    verdict = judge_gate(JOB, gate(min=bound), Status.SUCCESS, rows(value))
    assert verdict.reason == reason and format_number(value) in reason


def test_gate_counts_read_the_same_everywhere() -> None:
    met = judge_gate(JOB, gate(min=1.0), Status.SUCCESS, rows(3.0))
    unmet = judge_gate(JOB, gate(min=10.0), Status.SUCCESS, rows(3.0))
    assert (summary([met, met]), summary([met, unmet, unmet])) == ("gates: 2 met", "gates: 1 met, 2 unmet")
